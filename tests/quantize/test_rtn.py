"""RTN against a plain per-value Python loop that follows the documented definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantfid.errors import QuantfidError
from quantfid.quantize.rtn import RTNConfig, rtn_quantize_numpy


def _loop(w: np.ndarray, bits: int, group: int, symmetric: bool) -> np.ndarray:
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        for start in range(0, w.shape[1], group):
            x = [float(v) for v in w[r, start:start + group]]
            if symmetric:
                qmax = 2 ** (bits - 1) - 1
                scale = float(np.float32(np.float16(np.float32(max(abs(v) for v in x)) / np.float32(qmax))))
                for j, v in enumerate(x):
                    q = 0.0 if scale == 0 else min(max(round(float(np.float32(v) / np.float32(scale))), -qmax), qmax)
                    out[r, start + j] = np.float32(q) * np.float32(scale)
            else:
                levels = 2 ** bits - 1
                lo = float(np.float32(np.float16(min(x))))
                scale = float(np.float32(np.float16((np.float32(max(x)) - np.float32(lo)) / np.float32(levels))))
                for j, v in enumerate(x):
                    t = np.float32(np.float32(v) - np.float32(lo)) / np.float32(scale) if scale else 0.0
                    q = 0.0 if scale == 0 else min(max(round(float(t)), 0), levels)
                    out[r, start + j] = np.float32(lo) + np.float32(q) * np.float32(scale)
    return out


@pytest.mark.parametrize("bits", [8, 6, 5, 4, 3, 2])
@pytest.mark.parametrize("group", [32, 64, 128])
@pytest.mark.parametrize("symmetric", [True, False])
def test_rtn_matches_loop(bits: int, group: int, symmetric: bool) -> None:
    rng = np.random.default_rng(bits * 1000 + group + symmetric)
    w = (rng.standard_normal((3, 160)) * rng.uniform(0.01, 2, (3, 1))).astype(np.float32)
    w[0, :40] = 0.0                      # an all-zero group
    w[1, 5] = 9.0                        # an outlier
    cfg = RTNConfig(bits, group, symmetric)
    got = rtn_quantize_numpy(w, cfg)     # 160 = 1.25 groups of 128: a short last group too
    np.testing.assert_allclose(got, _loop(w, bits, group, symmetric), rtol=0, atol=1e-6)
    levels = 2 ** bits - (1 if symmetric else 0)
    for r in range(3):
        for s in range(0, 160, group):
            assert len(np.unique(got[r, s:s + group])) <= levels


def test_rtn_error_shrinks_with_bits() -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 256)).astype(np.float32)
    errs = [float(np.abs(rtn_quantize_numpy(w, RTNConfig(b, 64, False)) - w).mean()) for b in (2, 3, 4, 5, 6, 8)]
    assert errs == sorted(errs, reverse=True)


def test_names_and_bytes() -> None:
    cfg = RTNConfig(4, 128, False)
    assert cfg.name == "rtn-w4g128-asym" and RTNConfig.parse(cfg.name) == cfg
    # 576 values: 4.5 groups -> 5 groups of (scale, offset) fp16
    assert cfg.n_bytes(10, 576) == 10 * (576 * 4 + 5 * 32) / 8
    assert RTNConfig(3, 32, True).n_bytes(1, 64) == (64 * 3 + 2 * 16) / 8
    assert math.isclose(RTNConfig(8, 32, True).n_bytes(1, 32) * 8 / 32, 8.5)
    for bad in ("rtn-w7g64-sym", "rtn-w4g48-sym", "rtn-w4-sym", "w4g64"):
        with pytest.raises(QuantfidError):
            RTNConfig.parse(bad)
