"""transformers + torch loading: local directories, hub ids, GGUF files (dequantized).

``load_hf("embedded")`` (or None) loads the embedded default reference in float32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from quantfid import embedded
from quantfid.backends.base import LoadedModel
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_file
from quantfid.records import Model, Role

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_hf(spec: str | None = None, dtype: str = "float32", device: str = "auto",
            role: Role = "quant", name: str | None = None) -> LoadedModel:
    """Load a causal LM with transformers.

    spec: None or ``"embedded"`` (the embedded default), a ``.gguf`` file (dequantized by
    transformers' GGUF loader), a local model directory, or a hub id (needs network).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise QuantfidError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, object] = {}
    if spec in (None, "embedded"):
        path = embedded.gguf_path()
        src, kwargs["gguf_file"] = str(path.parent), path.name
        info = Model(id=name or embedded.MODEL_ID, role=role, source=f"embedded:{path.name}",
                     format="gguf", scheme="f32-from-Q4_1", hash=hash_file(path))
    elif spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise QuantfidError(f"GGUF file not found: {spec}")
        src, kwargs["gguf_file"] = str(path.resolve().parent), path.name
        info = Model(id=name or path.stem, role=role, source=str(path), format="gguf",
                     hash=hash_file(path))
    elif Path(spec).is_dir():
        src = spec
        info = Model(id=name or Path(spec).name, role=role, source=str(Path(spec).resolve()), format="hf")
    elif Path(spec).exists():
        raise QuantfidError(f"{spec} is a file but not a .gguf; give a GGUF file or a model directory")
    else:
        src = spec
        info = Model(id=name or spec, role=role, source=spec, format="hf")
    try:
        tok = AutoTokenizer.from_pretrained(src, **kwargs)
        module = AutoModelForCausalLM.from_pretrained(src, dtype=DTYPES[dtype], **kwargs)
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: hub ids need network)" if offline else ""
        raise QuantfidError(f"could not load model {spec!r}{hint}: {e}") from e
    dev = resolve_device(device)
    module.to(dev).eval()
    return LoadedModel(module=module, tokenizer=tok, info=info, device=dev, dtype=DTYPES[dtype])
