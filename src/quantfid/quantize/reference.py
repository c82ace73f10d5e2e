"""Shapes of a reference model without loading its weights (for listing recipes and bpw)."""

from __future__ import annotations

from pathlib import Path

from quantfid import embedded
from quantfid.errors import QuantfidError
from quantfid.quantize.names import ModelShape, meta_model, model_shape


def gguf_source(spec: str | None) -> Path | None:
    """The GGUF file a reference spec points at (the embedded one for None/``embedded``)."""
    if spec in (None, "embedded"):
        return embedded.gguf_path()
    return Path(spec) if spec.endswith(".gguf") else None


def reference_shape(spec: str | None) -> ModelShape:
    """The quantizable tensors of reference ``spec`` (embedded, a .gguf, a model directory or
    hub id), from its config alone on the meta device."""
    from transformers import AutoConfig

    g = gguf_source(spec)
    try:
        if g is not None:
            if not g.is_file():
                raise QuantfidError(f"GGUF file not found: {g}")
            cfg = AutoConfig.from_pretrained(str(g.resolve().parent), gguf_file=g.name)
        else:
            cfg = AutoConfig.from_pretrained(str(spec))
    except (OSError, ValueError) as e:
        raise QuantfidError(f"could not read the config of {spec!r}: {e}") from e
    return model_shape(meta_model(cfg))
