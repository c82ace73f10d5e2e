"""Backend and numerics behind each quant's figures, and when they change the reading.

Each workspace Model's ``extra`` carries ``backend`` (``hf``, ``llamacpp``, ``http``...),
``numerics`` (``ggml-cpu``: a GGML recipe simulated with llama.cpp's CPU numerics;
``weights``: weight-only simulation; a runtime's own numerics otherwise), ``dtype`` and
``device`` (set by the pipeline; None where a workspace predates them).

GGML presets under ``ggml-cpu`` beside RTN recipes under ``weights`` is the normal default
and no warning. Warnings (shown on the report's first screen):

* one scheme family measured under two numerics: the family of a scheme is ``"ggml"`` for
  llama.cpp type and preset names (``Q4_0``, ``Q4_K_M``, ``IQ4_XS``, ``TQ1_0``, ``MXFP4``...),
  else the part before its first ``-`` (``rtn-w4g64-asym`` -> ``rtn``), else the scheme;
* the cohort's quants measured by more than one backend.
"""

from __future__ import annotations

import re
from typing import Any

from quantfid.records import Model

FIELDS: tuple[str, ...] = ("backend", "numerics", "dtype", "device")
_GGML = re.compile(r"^(I?Q\d|TQ\d|MXFP4|F16$|BF16$|F32$)", re.IGNORECASE)


def info(model: Model) -> dict[str, Any]:
    """``{backend, numerics, dtype, device}`` of a model (None where not recorded)."""
    extra = model.extra or {}
    return {k: (None if extra.get(k) is None else str(extra.get(k))) for k in FIELDS}


def family(scheme: str | None) -> str | None:
    """The scheme family: "ggml" for llama.cpp types / presets, else the first "-" part."""
    if not scheme:
        return None
    if _GGML.match(scheme):
        return "ggml"
    return scheme.split("-", 1)[0].lower()


def warnings(quants: list[Model]) -> list[str]:
    """Numerics caveats that change the reading of a cohort (plain words)."""
    out: list[str] = []
    by_family: dict[str, dict[str, list[str]]] = {}
    backends: dict[str, list[str]] = {}
    for m in quants:
        i = info(m)
        fam = family(m.scheme)
        if fam is not None and i["numerics"] is not None:
            by_family.setdefault(fam, {}).setdefault(i["numerics"], []).append(m.id)
        if i["backend"] is not None:
            backends.setdefault(i["backend"], []).append(m.id)
    for fam, nums in sorted(by_family.items()):
        if len(nums) > 1:
            parts = "; ".join(f"{n}: {', '.join(ids)}" for n, ids in sorted(nums.items()))
            out.append(f"{fam} quants were measured under different numerics ({parts}): their "
                       f"differences mix quantization with the numerics path")
    if len(backends) > 1:
        parts = "; ".join(f"{b}: {', '.join(ids)}" for b, ids in sorted(backends.items()))
        out.append(f"the quants were measured by different backends ({parts}): compare "
                   f"figures across backends with care")
    return out
