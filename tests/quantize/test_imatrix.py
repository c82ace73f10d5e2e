"""Importance matrix: mean squared inputs of each Linear, checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantfid.errors import QuantfidError
from quantfid.quantize import compute_imatrix, load_imatrix, model_shape

from .conftest import tiny_llama


def test_imatrix_matches_direct_computation(tmp_path) -> None:
    m = tiny_llama(hidden=64, ffn=128, vocab=100)
    rng = np.random.default_rng(0)
    windows = [rng.integers(0, 100, (2, 16)), rng.integers(0, 100, (1, 16))]
    im = compute_imatrix(m, windows, progress=False, meta={"corpus": "random"})
    # layer 0 q/k/v see input_layernorm(embeddings); compute that by hand
    ids = torch.from_numpy(np.concatenate([w.reshape(-1) for w in windows]))
    with torch.no_grad():
        x = m.model.embed_tokens(ids)
        w = m.model.layers[0].input_layernorm.weight
        xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + m.config.rms_norm_eps) * w
    expect = (xn.double() ** 2).mean(0).numpy()
    for key in ("blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"):
        np.testing.assert_allclose(im.values[key], expect, rtol=1e-5)
    assert "output.weight" not in im.values                    # llama-imatrix skips the output
    assert im.values["blk.1.ffn_down.weight"].shape == (128,)
    assert im.meta["chunks"] == 3 and im.meta["tokens_per_entry"] == 48
    path = tmp_path / "imatrix.npz"
    im.save(path)
    back = load_imatrix(path)
    assert back.hash == im.hash and back.meta["corpus"] == "random"
    t = next(t for t in model_shape(m).tensors if t.gguf == "blk.0.ffn_down.weight")
    assert back.lookup(t) is not None


def test_wrong_model_imatrix_is_refused() -> None:
    from quantfid.quantize import Imatrix

    m = tiny_llama(hidden=64, ffn=128, vocab=100)
    t = next(t for t in model_shape(m).tensors if t.gguf == "blk.0.attn_q.weight")
    with pytest.raises(QuantfidError, match="another model"):
        Imatrix({"blk.0.attn_q.weight": np.ones(65, np.float32)}).lookup(t)
    with pytest.raises(QuantfidError, match="not found"):
        load_imatrix("/nonexistent/imatrix.npz")


def test_llama_cpp_legacy_imatrix_loads(tmp_path) -> None:
    """llama.cpp's legacy .dat layout, written by hand: values are sums over ncall calls."""
    import struct

    name = b"blk.0.attn_q.weight"
    vals = np.arange(1, 5, dtype=np.float32) * 6
    blob = struct.pack("<i", 1) + struct.pack("<i", len(name)) + name + struct.pack("<ii", 3, 4)
    blob += vals.tobytes() + struct.pack("<i", 10) + b"x.txt"
    p = tmp_path / "imatrix.dat"
    p.write_bytes(blob)
    im = load_imatrix(p)
    np.testing.assert_allclose(im.values["blk.0.attn_q.weight"], vals / 3)
