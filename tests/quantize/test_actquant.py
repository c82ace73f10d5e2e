"""Activation rounding against llama.cpp's own CPU quantizers (called through ctypes) and
against a plain per-block numpy loop of ggml's reference formulas."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.backends import llamacpp
from quantfid.errors import QuantfidError
from quantfid.quantize import actquant

needs_llamacpp = pytest.mark.skipif(not llamacpp.available(),
                                    reason="llama-cpp-python is not installed")


def _activations(rows: int, n: int, seed: int) -> np.ndarray:
    """Activation-like rows: heavy tails, one outlier channel, an all-zero block, exact ties
    of magnitude with opposite signs, and values that land on .5 after scaling."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_t(4, size=(rows, n)) * 0.7).astype(np.float32)
    x[:, 7] *= 40.0
    x[0, :256] = 0.0
    x[1, n - 2], x[1, n - 1] = -60.0, 60.0
    x[2, :32] = np.arange(32, dtype=np.float32) / 31 * 127 / 254   # q = k + .5 at scale 127/amax
    return x


def _lib() -> ctypes.CDLL:
    import llama_cpp

    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-cpu.so"))
    lib.ggml_cpu_init()
    return lib


def _ggml_rows(fn: str, x: np.ndarray, block_bytes: int, block: int) -> np.ndarray:
    lib = _lib()
    out = np.zeros((x.shape[0], x.shape[1] // block * block_bytes), dtype=np.uint8)
    f = getattr(lib, fn)
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    for r in range(x.shape[0]):
        row = np.ascontiguousarray(x[r])
        f(row.ctypes.data, out[r].ctypes.data, x.shape[1])
    return out


@needs_llamacpp
def test_q8_0_and_q8_1_equal_llamacpp() -> None:
    x = _activations(6, 576, seed=1)
    raw = _ggml_rows("quantize_row_q8_0", x, 34, 32).reshape(6, 18, 34)
    d = raw[..., :2].copy().view(np.float16).astype(np.float32)          # (6, 18, 1)
    q = raw[..., 2:].view(np.int8).astype(np.float32)                    # (6, 18, 32)
    expect = (d * q).reshape(6, 576)
    np.testing.assert_array_equal(actquant.q8_0(torch.from_numpy(x)).numpy(), expect)

    raw1 = _ggml_rows("quantize_row_q8_1", x, 36, 32).reshape(6, 18, 36)
    d1 = raw1[..., :2].copy().view(np.float16).astype(np.float32)
    s1 = raw1[..., 2:4].copy().view(np.float16).astype(np.float32)[..., 0]   # (6, 18)
    q1 = raw1[..., 4:].view(np.int8).astype(np.float32)
    vals, corr = actquant.q8_1(torch.from_numpy(x))
    np.testing.assert_array_equal(vals.numpy(), (d1 * q1).reshape(6, 576))
    np.testing.assert_array_equal((corr.numpy() + d1[..., 0] * q1.sum(-1)), s1)
    assert np.any(corr.numpy() != 0)            # the sum field really differs sometimes


@needs_llamacpp
def test_q8_K_equals_llamacpp() -> None:
    x = _activations(5, 1536, seed=2)
    raw = _ggml_rows("quantize_row_q8_K", x, 292, 256).reshape(5, 6, 292)
    d = raw[..., :4].copy().view(np.float32)                             # (5, 6, 1)
    q = raw[..., 4:260].view(np.int8).astype(np.float32)
    np.testing.assert_array_equal(actquant.q8_K(torch.from_numpy(x)).numpy(),
                                  (d * q).reshape(5, 1536))


def _q8_K_loop(x: np.ndarray) -> np.ndarray:
    """ggml's quantize_row_q8_K_ref, one value at a time in float32 (independent of torch)."""
    out = np.zeros_like(x)
    f = np.float32
    for r in range(x.shape[0]):
        for b in range(0, x.shape[1], 256):
            blk = x[r, b:b + 256]
            amax, mx = f(0), f(0)
            for v in blk:
                if abs(v) > amax:
                    amax, mx = abs(v), v
            if amax == 0:
                continue
            iscale = f(f(-127.0) / mx)
            d = f(f(1.0) / iscale)
            for j, v in enumerate(blk):
                q = min(127.0, float(np.rint(f(iscale * v))))
                out[r, b + j] = f(d * f(q))
    return out


def _q8_0_loop(x: np.ndarray) -> np.ndarray:
    """ggml's AVX quantize_row_q8_0 arithmetic, block by block in float32."""
    out = np.zeros_like(x)
    f = np.float32
    for r in range(x.shape[0]):
        for b in range(0, x.shape[1], 32):
            blk = x[r, b:b + 32]
            amax = f(np.max(np.abs(blk)))
            d16 = f(np.float16(f(amax / f(127.0))))
            inv = f(f(127.0) / amax) if amax != 0 else f(0)
            out[r, b:b + 32] = d16 * np.rint(blk * inv).astype(np.float32)
    return out


def test_against_plain_loops() -> None:
    x = _activations(3, 512, seed=3)
    t = torch.from_numpy(x)
    np.testing.assert_array_equal(actquant.q8_K(t).numpy(), _q8_K_loop(x))
    np.testing.assert_array_equal(actquant.q8_0(t).numpy(), _q8_0_loop(x))


def test_shapes_types_and_errors() -> None:
    x = torch.from_numpy(_activations(4, 256, seed=4)).reshape(2, 2, 256)
    for act in actquant.ACT_TYPES:
        y = actquant.round_activation(x, act)
        assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.equal(actquant.round_activation(x, "f32"), x)
    assert torch.equal(actquant.round_activation(x, "f16"), x.half().float())
    assert actquant.vec_dot_type("Q4_1") == "q8_1" and actquant.vec_dot_type("IQ4_XS") == "q8_K"
    assert actquant.vec_dot_type("IQ4_NL") == "q8_0" and actquant.vec_dot_type("rtn-w4g64-asym") == "f32"
    with pytest.raises(QuantfidError, match="multiple of the block"):
        actquant.q8_K(torch.ones(2, 288))
    with pytest.raises(QuantfidError, match="unknown activation type"):
        actquant.round_activation(x, "q4_0")
