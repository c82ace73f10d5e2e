"""ggml-cpu numerics on a small random Llama: each quantized linear computes llama.cpp's own
dot product (its vec_dot kernels called through ctypes), the tied head uses the embedding's
type, K/V go through f16, and removing the handle restores the module exactly."""

from __future__ import annotations

import copy
import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.backends import llamacpp
from quantfid.errors import QuantfidError
from quantfid.quantize import ggml, quantize_model
from quantfid.quantize.actquant import VEC_DOT_TYPE
from quantfid.quantize.numerics import apply_numerics
from quantfid.quantize.recipe import Recipe, Rule

from .conftest import tiny_llama

needs_llamacpp = pytest.mark.skipif(not llamacpp.available(),
                                    reason="llama-cpp-python is not installed")


class _Traits(ctypes.Structure):
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                            ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def _llamacpp_linear(w_bytes: np.ndarray, scheme: str, x: np.ndarray) -> np.ndarray:
    """y = W x as ggml's CPU backend computes it: x through the vec-dot type's from_float,
    then the type's vec_dot per weight row (float32 result)."""
    import gguf
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"))
    lib.ggml_cpu_init()
    lib.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_Traits)
    wt = lib.ggml_get_type_traits_cpu(gguf.GGMLQuantizationType[scheme].value).contents
    xt = lib.ggml_get_type_traits_cpu(wt.vec_dot_type).contents
    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(wt.vec_dot_type)]
    n = x.shape[-1]
    xq = np.zeros(n // block * size, dtype=np.uint8)
    xs = np.ascontiguousarray(x, dtype=np.float32)
    _FROM_FLOAT(xt.from_float)(xs.ctypes.data, xq.ctypes.data, n)
    dot = _VEC_DOT(wt.vec_dot)
    out = np.zeros(w_bytes.shape[0], dtype=np.float32)
    for j in range(w_bytes.shape[0]):
        row = np.ascontiguousarray(w_bytes[j])
        dot(n, out[j:].ctypes.data, 0, row.ctypes.data, 0, xq.ctypes.data, 0, 1)
    return out


@needs_llamacpp
@pytest.mark.parametrize("scheme", ["Q8_0", "Q4_0", "Q4_1", "Q5_1", "IQ4_NL", "Q4_K", "Q6_K",
                                    "Q2_K", "IQ4_XS"])
def test_linear_equals_llamacpp_dot_product(scheme: str) -> None:
    rng = np.random.default_rng(7)
    w = (rng.standard_normal((48, 512)) * 0.05).astype(np.float32)
    x = (rng.standard_t(4, size=512) * 0.8).astype(np.float32)
    data = ggml.quantize(w, scheme)
    expect = _llamacpp_linear(data, scheme, x).astype(np.float64)
    lin = torch.nn.Linear(512, 48, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(ggml.dequantize(data, scheme, 512)))
    plain = lin(torch.from_numpy(x)).detach().numpy().astype(np.float64)

    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = lin
            self.config = type("C", (), {"_attn_implementation": "sdpa"})()

    m = M()
    with apply_numerics(m, {"lin.weight": scheme}, "ggml-cpu") as h:
        assert h.types == {"lin": scheme}
        emulated = m.lin(torch.from_numpy(x)).detach().numpy().astype(np.float64)
    scale = np.abs(expect).max()
    err_emu = np.abs(emulated - expect).max() / scale
    err_plain = np.abs(plain - expect).max() / scale
    # float32 sums in another order: a few ulps of the largest output
    assert err_emu < 2e-6, (scheme, err_emu)
    assert err_plain > 20 * err_emu, (scheme, err_plain, err_emu)
    # the hooks are gone: the plain product again
    assert np.array_equal(m.lin(torch.from_numpy(x)).detach().numpy().astype(np.float64), plain)


def _logits(m: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return m(input_ids=ids, use_cache=False).logits


def test_weights_numerics_changes_nothing_and_remove_restores() -> None:
    m = tiny_llama(seed=11)
    ids = torch.randint(0, 320, (1, 40), generator=torch.Generator().manual_seed(0))
    before = _logits(m, ids)
    attn = m.config._attn_implementation
    with apply_numerics(m, None, "weights") as h:
        assert not h.types
        assert torch.equal(_logits(m, ids), before)
    rep = quantize_model(q := copy.deepcopy(m), Recipe("t", "t", default="Q4_0"), progress=False)
    plain = _logits(q, ids)
    h = apply_numerics(q, rep.types, "ggml-cpu")
    emulated = _logits(q, ids)
    assert q.config._attn_implementation != attn
    h.remove()
    h.remove()                                   # idempotent
    assert q.config._attn_implementation == attn
    assert torch.equal(_logits(q, ids), plain)
    assert not torch.equal(emulated, plain)


def test_tied_head_takes_embedding_type_and_rtn_gets_none() -> None:
    m = tiny_llama(seed=12)
    recipe = Recipe("t", "t", rules=(Rule(r"token_embd", "Q8_0"), Rule(r"ffn_", "rtn-w4g64-asym")),
                    default="Q4_K")
    rep = quantize_model(m, recipe, progress=False)
    with apply_numerics(m, rep.types, "ggml-cpu") as h:
        assert h.types["lm_head"] == "Q8_0"
        assert h.types["model.layers.0.self_attn.q_proj"] == "Q4_K"
        assert not any("mlp" in n for n in h.types)      # RTN: no activation rounding


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_reference_rounds_only_kv_to_f16(attn: str) -> None:
    """types=None (the float reference): no linear is hooked, and the attention kernel sees
    keys (after RoPE) and values that are exactly f16 numbers."""
    import sys

    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    m = tiny_llama(seed=13)
    m.set_attn_implementation(attn)
    ids = torch.randint(0, 320, (1, 48), generator=torch.Generator().manual_seed(1))
    assert m.config._attn_implementation == attn
    llama_mod = sys.modules[type(m.model.layers[0].self_attn).__module__]
    fn = ALL_ATTENTION_FUNCTIONS[attn] if attn != "eager" else llama_mod.eager_attention_forward
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def spy(module, q, k, v, *a, **kw):  # type: ignore[no-untyped-def]
        seen.append((k, v))
        return fn(module, q, k, v, *a, **kw)

    def f16_exact(t: torch.Tensor) -> bool:
        return torch.equal(t, t.half().float())

    if attn == "eager":
        llama_mod.eager_attention_forward = spy
    else:
        ALL_ATTENTION_FUNCTIONS[attn] = spy
    try:
        plain = _logits(m, ids)
        assert not any(f16_exact(k) or f16_exact(v) for k, v in seen)
        seen.clear()
        with apply_numerics(m, None, "ggml-cpu") as h:
            assert not h.types
            out = _logits(m, ids)
        assert m.config._attn_implementation == attn
    finally:
        if attn == "eager":
            llama_mod.eager_attention_forward = fn
        else:
            ALL_ATTENTION_FUNCTIONS[attn] = fn
    assert len(seen) == 2 and all(f16_exact(k) and f16_exact(v) for k, v in seen)
    assert not torch.equal(out, plain)


def test_bad_input() -> None:
    m = tiny_llama(seed=14)
    with pytest.raises(QuantfidError, match="unknown numerics"):
        apply_numerics(m, None, "ggml-cuda")
    with pytest.raises(QuantfidError, match="float32"):
        apply_numerics(copy.deepcopy(m).to(torch.bfloat16), None, "ggml-cpu")
    with pytest.raises(QuantfidError, match="transformers model"):
        apply_numerics(torch.nn.Linear(4, 4), None, "ggml-cpu")
    assert set(ggml.GGML_TYPES) <= set(VEC_DOT_TYPE)


def test_default_numerics() -> None:
    from quantfid.quantize import get_recipe
    from quantfid.quantize.numerics import default_numerics

    from .conftest import smollm_shape

    shape = smollm_shape()
    assert default_numerics(get_recipe("Q4_K_M").type_map(shape)) == "ggml-cpu"
    assert default_numerics(get_recipe("mix-q4_0-embd-q8_0").type_map(shape)) == "ggml-cpu"
    assert default_numerics(get_recipe("rtn-w4g64-asym").type_map(shape)) == "weights"
    assert default_numerics({"a": "F32"}) == "weights" and default_numerics(None) == "weights"
    assert default_numerics({"a": "F16"}) == "ggml-cpu"
