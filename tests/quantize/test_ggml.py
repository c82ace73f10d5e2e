"""libgguf's GGML quantizers against llama.cpp's own Python ones (gguf.quants), byte for byte."""

from __future__ import annotations

import gguf
import gguf.quants
import numpy as np
import pytest

from quantfid.errors import QuantfidError
from quantfid.quantize import ggml

# the types gguf-py (llama.cpp's package) can quantize itself
SHARED = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "TQ1_0", "TQ2_0", "MXFP4")


def _weights(rng: np.random.Generator, rows: int = 24, cols: int = 512) -> np.ndarray:
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w *= rng.uniform(1e-3, 3.0, size=(rows, 1)).astype(np.float32)   # row scales
    w[0] = 0.0                                                       # an all-zero row
    w[1] = 0.25                                                      # a constant row
    w[2, ::7] *= 40.0                                                # outliers
    w[3] = rng.integers(-8, 8, cols).astype(np.float32) * 0.125      # on a grid (ties)
    return w


@pytest.mark.parametrize("name", SHARED)
def test_libgguf_bytes_equal_gguf_py(name: str) -> None:
    rng = np.random.default_rng(1)
    w = _weights(rng)
    ours = ggml.quantize(w, name)
    theirs = gguf.quants.quantize(w, gguf.GGMLQuantizationType[name])
    assert ours.dtype == np.uint8 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


# the IQ1/IQ2 lattices take seconds to build on first use: those cases are marked slow
_SLOW = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S"}


@pytest.mark.parametrize("name", [pytest.param(t, marks=pytest.mark.slow) if t in _SLOW else t
                                  for t in ggml.GGML_TYPES])
def test_dequantize_equals_gguf_py(name: str) -> None:
    """Every type's expansion matches gguf-py's reference dequantizer exactly."""
    rng = np.random.default_rng(2)
    w = _weights(rng, rows=4, cols=512)
    im = rng.uniform(0.1, 2.0, 512).astype(np.float32)
    data = ggml.quantize(w, name, im if name in ggml.REQUIRES_IMATRIX else None)
    ours = ggml.dequantize(data, name, 512)
    theirs = gguf.quants.dequantize(data, gguf.GGMLQuantizationType[name])
    assert ours.shape == (4, 512)
    np.testing.assert_array_equal(ours, theirs)


def test_type_table_matches_gguf_sizes() -> None:
    for name in ggml.GGML_TYPES:
        t = ggml.ggml_type(name)
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]]
        assert (t.block_size, t.block_bytes) == (block, size)
        assert t.row_bytes(block * 3) == 3 * size


def test_fallbacks_follow_llama_cpp() -> None:
    assert ggml.fallback_type("Q4_K", 576) == "Q5_0"
    assert ggml.fallback_type("Q5_K", 576) == "Q5_1"
    assert ggml.fallback_type("Q6_K", 576) == "Q8_0"
    assert ggml.fallback_type("Q2_K", 576) == "Q4_0"
    assert ggml.fallback_type("Q3_K", 576) == "Q4_0"
    assert ggml.fallback_type("IQ4_XS", 576) == "IQ4_NL"
    assert ggml.fallback_type("IQ2_S", 576) == "IQ4_NL"
    assert ggml.fallback_type("Q4_K", 1536) == "Q4_K"       # 6 blocks of 256
    assert ggml.fallback_type("Q6_K", 80) == "F16"          # not even 32-wide
    with pytest.raises(QuantfidError):
        ggml.fallback_type("Q4_0", 48)                      # no fallback defined


def test_imatrix_required_and_used() -> None:
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 256)).astype(np.float32)
    with pytest.raises(QuantfidError, match="importance matrix"):
        ggml.quantize(w, "IQ2_XS")
    with pytest.raises(QuantfidError, match="multiple"):
        ggml.quantize(w[:, :96], "Q4_K")
    im = rng.uniform(0.01, 5.0, 256).astype(np.float32)
    plain = ggml.quantize(w, "Q4_K")
    weighted = ggml.quantize(w, "Q4_K", im)
    assert not np.array_equal(plain, weighted)
    # the weighted rounding has a lower importance-weighted error than the plain one
    err = lambda d: float((((ggml.dequantize(d, "Q4_K", 256) - w) ** 2) * im).sum())  # noqa: E731
    assert err(weighted) < err(plain)


_RACE = """
import numpy as np
from concurrent.futures import ThreadPoolExecutor
from quantfid.quantize import ggml
rng = np.random.default_rng(0)
ws = [rng.standard_normal((8, 256)).astype(np.float32) for _ in range(8)]
with ThreadPoolExecutor(4) as ex:
    par = list(ex.map(lambda w: ggml.quantize(w, "IQ3_S"), ws))
assert all(np.array_equal(a, ggml.quantize(w, "IQ3_S")) for a, w in zip(par, ws))
print("ok")
"""


def test_first_use_of_an_iq_type_from_threads_is_safe() -> None:
    """libgguf builds IQ tables lazily without a lock (a fresh process crashed when threads
    raced on it); ggml.quantize serializes each type's first use."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
