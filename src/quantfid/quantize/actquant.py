"""llama.cpp's activation types: what its CPU matrix products round each activation row to.

A ggml CPU matrix product ``W @ x`` with a quantized ``W`` first converts the activation row
``x`` (float32) to the weight type's *vec-dot type* and then takes integer dot products
block by block (``type_traits_cpu[type].vec_dot_type`` in ggml/src/ggml-cpu/ggml-cpu.c). The
functions here return that row as the dot product sees it, expanded back to float32, so a
float32 matmul with the dequantized weight computes the same sum up to accumulation order:

``q8_0`` (blocks of 32; Q4_0, Q5_0, Q8_0, IQ4_NL, MXFP4)
    d = amax / 127 stored as fp16; q = round-half-even(x * (127 / amax)) (the x86 AVX path
    of ``quantize_row_q8_0``: the multiplier is the float32 127/amax, not 1/fp16(d));
    value = fp16(d) * q.
``q8_1`` (blocks of 32; Q4_1, Q5_1)
    as q8_0, plus a per-block sum s = fp16(d * sum(q)) that multiplies the weight block's
    minimum. :func:`q8_1` returns the q8_0-style values and the correction
    ``s - fp16(d) * sum(q)`` per block, which :mod:`quantfid.quantize.numerics` adds through
    the weight minima so the product uses s exactly.
``q8_K`` (blocks of 256; every K-quant, IQ4_XS, the other IQ and TQ types)
    max = the block's value of largest magnitude (the first one), iscale = -127 / max,
    q = min(127, round-half-even(iscale * x)), d = 1 / iscale as float32 (``quantize_row_q8_K``).
``f16`` / ``bf16`` (F16 / BF16 weights)
    the row rounded to that float type (round to nearest even).
``f32`` (F32 weights, and everything that is not a GGML type): unchanged.

All arithmetic is float32, element for element as ggml does it; only the final dot products
are summed in another order. Every function takes (..., n) and returns float32 (..., n);
``n`` must be a multiple of the block (rows that are not fall back to another weight type in
llama.cpp, so a GGML weight always has whole blocks).
"""

from __future__ import annotations

import torch

from quantfid.errors import QuantfidError

#: GGML weight type -> the activation type of its CPU dot product
VEC_DOT_TYPE: dict[str, str] = {
    "F32": "f32", "F16": "f16", "BF16": "bf16",
    "Q4_0": "q8_0", "Q5_0": "q8_0", "Q8_0": "q8_0", "IQ4_NL": "q8_0", "MXFP4": "q8_0",
    "Q4_1": "q8_1", "Q5_1": "q8_1",
    "Q2_K": "q8_K", "Q3_K": "q8_K", "Q4_K": "q8_K", "Q5_K": "q8_K", "Q6_K": "q8_K",
    "IQ4_XS": "q8_K", "IQ2_XXS": "q8_K", "IQ2_XS": "q8_K", "IQ2_S": "q8_K", "IQ3_XXS": "q8_K",
    "IQ3_S": "q8_K", "IQ1_S": "q8_K", "IQ1_M": "q8_K", "TQ1_0": "q8_K", "TQ2_0": "q8_K",
}
ACT_TYPES = ("f32", "f16", "bf16", "q8_0", "q8_1", "q8_K")
BLOCK = {"q8_0": 32, "q8_1": 32, "q8_K": 256}


def vec_dot_type(scheme: str) -> str:
    """The activation type llama.cpp's CPU backend rounds a row to for a weight of ``scheme``
    (``f32`` for RTN schemes and anything that is not a GGML type)."""
    return VEC_DOT_TYPE.get(scheme, "f32")


def _rdiv(num: float, t: torch.Tensor) -> torch.Tensor:
    """``num / t`` correctly rounded (torch's ``scalar / tensor`` multiplies by a rounded
    reciprocal, which is off by an ulp where ggml divides)."""
    return torch.div(torch.full_like(t, num), t)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    n = x.shape[-1]
    if n % block:
        raise QuantfidError(f"activation rows of {n} values are not a multiple of the block "
                            f"of {block}")
    return x.to(torch.float32).reshape(-1, n // block, block)           # (R, n/B, B)


def _q8_0_parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(q, fp16 scale as float32, float32 scale) of q8_0 blocks: (R, nb, 32), (R, nb, 1) x2."""
    xb = _blocks(x, 32)
    hi, lo = xb.amax(-1, keepdim=True), xb.amin(-1, keepdim=True)      # (R, nb, 1)
    amax = torch.maximum(hi, -lo).abs()                                 # (R, nb, 1), no -0
    d = amax / 127.0
    inv = torch.where(amax > 0, _rdiv(127.0, amax), torch.zeros_like(amax))
    q = torch.round(xb * inv)                                           # half to even
    return q, d.to(torch.float16).to(torch.float32), d


def q8_0(x: torch.Tensor) -> torch.Tensor:
    """``x`` (..., n) as a q8_0 row sees it (float32, same shape)."""
    q, d16, _ = _q8_0_parts(x)
    return (q * d16).reshape(x.shape)


def q8_1(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (..., n) as q8_1 values (float32, same shape) and the per-block sum correction
    (..., n / 32): s - fp16(d) * sum(q), where s = fp16(d * sum(q)) is what the dot product
    multiplies the weight minimum by."""
    q, d16, d = _q8_0_parts(x)
    qsum = q.sum(-1, keepdim=True)                                      # (R, nb, 1) exact
    s = (d * qsum).to(torch.float16).to(torch.float32)
    corr = (s - d16 * qsum).reshape(*x.shape[:-1], -1)                  # (..., nb)
    return (q * d16).reshape(x.shape), corr


def _signed_absmax(xb: torch.Tensor) -> torch.Tensor:
    """Per block (last axis) the value of largest magnitude, sign kept; between +a and -a the
    first one, as ggml's scan keeps the first strictly larger |x|. (R, nb, B) -> (R, nb, 1)."""
    hi = xb.amax(-1, keepdim=True)
    lo = xb.amin(-1, keepdim=True)
    mx = torch.where(hi >= -lo, hi, lo)
    tie = (hi == -lo) & (hi != 0)
    if bool(tie.any()):                                                 # rare: resolve by order
        first = torch.gather(xb, -1, xb.abs().argmax(-1, keepdim=True))
        mx = torch.where(tie, first, mx)
    return mx


def q8_K(x: torch.Tensor) -> torch.Tensor:
    """``x`` (..., n) as a q8_K row sees it (float32, same shape)."""
    xb = _blocks(x, 256)                                                # (R, nb, 256)
    mx = _signed_absmax(xb)                                             # (R, nb, 1)
    nz = mx != 0
    safe = torch.where(nz, mx, torch.ones_like(mx))
    iscale = torch.where(nz, _rdiv(-127.0, safe), torch.zeros_like(mx))
    q = torch.round(iscale * xb).clamp_(max=127.0)
    d = torch.where(nz, _rdiv(1.0, torch.where(nz, iscale, torch.ones_like(iscale))),
                    torch.zeros_like(iscale))
    return (q * d).reshape(x.shape)


def round_activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """``x`` rounded to activation type ``act`` (one of :data:`ACT_TYPES`), float32. For
    ``q8_1`` this is the value part only (see :func:`q8_1` for the sum correction)."""
    if act == "f32":
        return x.to(torch.float32)
    if act == "f16":
        return x.to(torch.float16).to(torch.float32)
    if act == "bf16":
        return x.to(torch.bfloat16).to(torch.float32)
    if act == "q8_0":
        return q8_0(x)
    if act == "q8_1":
        return q8_1(x)[0]
    if act == "q8_K":
        return q8_K(x)
    raise QuantfidError(f"unknown activation type {act!r}; known: {', '.join(ACT_TYPES)}")
