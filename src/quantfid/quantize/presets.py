"""llama.cpp's quantization presets (``llama-quantize`` file types) as per-tensor type maps.

This follows ``llama_tensor_get_type_impl`` and ``tensor_type_fallback`` in llama.cpp's
src/llama-quant.cpp (ggml-org/llama.cpp, 2026 master) for a dense, non-Falcon model with
one expert: which tensors (output, token_embd, attn_v, ffn_down, attn_output, attn_q/k,
ffn_gate/up) get more bits, the ``use_more_bits`` layer pattern, the tied-embedding rule
(a model without ``output.weight`` quantizes ``token_embd`` as the output tensor) and the
fallback to a 32-wide block type for rows that are not a multiple of 256. llama.cpp walks
the tensors layer by layer, so its attn_v / ffn_down counters equal the layer index.

Differences from older llama.cpp releases: Q2_K / Q3_K now fall back to Q4_0 (IQ4_NL before).
"""

from __future__ import annotations

from quantfid.errors import QuantfidError
from quantfid.quantize.ggml import REQUIRES_IMATRIX, fallback_type
from quantfid.quantize.names import ModelShape, TensorInfo

#: preset (file type) -> default tensor type (``llama_ftype_get_default_type``)
PRESET_DEFAULT = {
    "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0", "Q5_1": "Q5_1", "Q8_0": "Q8_0",
    "Q2_K": "Q2_K", "Q2_K_S": "Q2_K", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K",
    "Q4_K_S": "Q4_K", "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K",
    "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS", "IQ2_M": "IQ2_S",
    "IQ3_XXS": "IQ3_XXS", "IQ3_XS": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S",
    "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M", "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS",
}

_IQ2_FAMILY = ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")
_OUTPUT_Q5K = ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M")


def use_more_bits(i_layer: int, n_layers: int) -> bool:
    """llama.cpp's layer pattern for extra bits: the first and last eighth, and every third
    layer in between (C integer division)."""
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def _block(name: str) -> int:
    from quantfid.quantize.ggml import ggml_type

    return ggml_type(name).block_size


def _choose(ft: str, new: str, t: TensorInfo, shape: ModelShape, has_imatrix: bool) -> str:
    """llama_tensor_get_type_impl for one tensor (before the shape fallback)."""
    cat, gqa = t.category, shape.n_gqa
    n = shape.n_layer
    i = t.layer if t.layer is not None else 0
    if cat == "output" or (shape.tied_embeddings and cat == "token_embd"):
        if t.n_per_row % _block(new) != 0:
            return "Q8_0"
        if ft in _OUTPUT_Q5K:
            return "Q5_K"
        return "Q6_K" if new != "Q8_0" else new
    if cat == "token_embd":
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        return new
    if ft in _IQ2_FAMILY:
        iq3 = ft in ("IQ2_S", "IQ2_M")
        if cat == "attn_v":
            return "Q4_K" if gqa >= 4 else ("IQ3_S" if iq3 else "Q2_K")
        if cat == "ffn_down":
            return ("IQ3_S" if iq3 else "Q2_K") if i < n // 8 else new
        if cat == "attn_output":
            if ft in ("IQ1_S", "IQ1_M"):
                return "IQ2_XXS"
            return "IQ3_S" if iq3 else new
        return new
    if cat == "attn_v":
        if ft == "Q2_K":
            return "Q4_K" if gqa >= 4 else "Q3_K"
        if ft == "Q2_K_S" and gqa >= 4:
            return "Q4_K"
        if ft == "IQ3_XXS":
            return "Q4_K" if gqa >= 4 else ("IQ3_S" if not has_imatrix else "IQ3_XXS")
        if ft in ("IQ3_XS", "IQ3_S") and gqa >= 4:
            return "Q4_K"
        if ft == "IQ3_M":
            return "Q4_K"
        if ft == "Q3_K_M":
            return "Q5_K" if i < 2 else "Q4_K"
        if ft == "Q3_K_L":
            return "Q5_K"
        if ft in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            return "Q5_K"
        if ft in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
            return "Q6_K"
        if ft == "Q4_K_S" and i < 4:
            return "Q5_K"
        return new
    if cat in ("attn_k", "attn_q"):
        if ft == "IQ3_XS":
            return "IQ3_XXS"
        if ft == "IQ3_XXS":
            return "IQ2_S"
        return new
    if cat == "ffn_down":
        if ft == "Q2_K":
            return "Q3_K"
        if ft == "Q2_K_S":
            return "Q4_K" if i < n // 8 else new
        if ft == "IQ3_XXS" and not has_imatrix:
            return "Q4_K" if i < n // 8 else "Q3_K"
        if ft == "Q3_K_M":
            return "Q5_K" if i < n // 16 else "Q4_K"  # non-Falcon: always at least Q4_K
        if ft == "IQ3_M" and i < n // 8:
            return "Q4_K"
        if ft == "Q3_K_L":
            return "Q5_K"
        if ft == "Q4_K_M":
            return "Q6_K" if use_more_bits(i, n) else new
        if i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
            return "Q5_K"
        if ft == "Q5_K_M" and use_more_bits(i, n):
            return "Q6_K"
        if ft == "Q4_K_S" and i < n // 8:
            return "Q5_K"
        if ft in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
            return "Q4_1" if ft == "Q4_0" else "Q5_1"
        return new
    if cat == "attn_output":
        return {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K",
                "IQ3_M": "Q4_K"}.get(ft, new)
    if cat in ("ffn_gate", "ffn_up"):
        if ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            return "IQ3_XXS"
        return new
    return new


def preset_types(preset: str, shape: ModelShape, has_imatrix: bool = False,
                 pure: bool = False) -> dict[str, str]:
    """Per-tensor GGML types (HF name -> type) of llama.cpp preset ``preset`` on ``shape``.

    pure: ``llama-quantize --pure``: the default type on every tensor (fallbacks still apply).
    """
    if preset not in PRESET_DEFAULT:
        raise QuantfidError(f"unknown llama.cpp preset {preset!r}; known: {', '.join(PRESET_DEFAULT)}")
    default = PRESET_DEFAULT[preset]
    out: dict[str, str] = {}
    for t in shape.tensors:
        new = default if pure else _choose(preset, default, t, shape, has_imatrix)
        out[t.name] = fallback_type(new, t.n_per_row)
    return out


def requires_imatrix(preset: str | None, t: TensorInfo, ggml: str) -> bool:
    """llama.cpp's ``tensor_requires_imatrix``: IQ1/IQ2/IQ3_XXS types (and Q2_K inside a
    Q2_K_S file) need an importance matrix, except on token_embd / output."""
    if t.category in ("token_embd", "output"):
        return False
    if ggml == "Q2_K":
        return preset == "Q2_K_S"
    return ggml in REQUIRES_IMATRIX
