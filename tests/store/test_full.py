"""Full reference store: round trip, metrics through the store, atomic writes, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax

from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.metrics.token import token_metrics
from quantfid.store.full import FullStore, FullStoreWriter, full_metrics

V, CTX = 64, 16  # llama.cpp scoring: 7 scored tokens per window


def make(tmp: Path, dtype: str = "float32", n_win: int = 3, seed: int = 0
         ) -> tuple[FullStore, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_win, 7, V)).astype(np.float32) * 3
    toks = rng.integers(0, V, size=(n_win, CTX)).astype(np.int32)
    with FullStoreWriter(tmp / "ref", model_id="m", tokenizer_id="t", vocab_size=V, ctx=CTX,
                         dtype=dtype, corpus_hash="c0") as w:
        for i in range(n_win):
            w.append(logits[i], toks[i])
    return FullStore(tmp / "ref"), logits, toks


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_roundtrip(tmp_path: Path, dtype: str) -> None:
    st, logits, toks = make(tmp_path, dtype)
    assert st.n_windows == 3 and st.n_scored == 7 and st.meta.corpus_hash == "c0"
    np.testing.assert_array_equal(np.asarray(st.tokens), toks)
    np.testing.assert_array_equal(st.targets(1), toks[1, 9:])
    lp = st.logp(2)
    assert isinstance(lp, np.memmap) and lp.dtype == np.dtype(dtype)
    tol = 1e-6 if dtype == "float32" else 2.0**-11 * 20  # float16: 11 significant bits
    np.testing.assert_allclose(lp, log_softmax(logits[2].astype(np.float64), axis=1), atol=tol)


def test_metrics_equal_direct_computation(tmp_path: Path) -> None:
    st, logits, toks = make(tmp_path)
    q = logits[1] + np.random.default_rng(5).normal(size=logits[1].shape).astype(np.float32) * 0.2
    tm = st.metrics_against(1, q)
    direct = token_metrics(logits[1], q, toks[1, 9:])
    np.testing.assert_allclose(tm.kld, direct.kld, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(tm.nll_ref, direct.nll_ref, rtol=1e-6)
    np.testing.assert_array_equal(tm.same_top1, direct.same_top1)
    with pytest.raises(MismatchError, match="targets differ"):
        st.metrics_against(1, q, targets=np.zeros(7, np.int64))
    with pytest.raises(MismatchError, match=r"expected shape \(7, 64\)"):
        st.metrics_against(1, q[:, :63])
    q[2, 5] = np.nan
    with pytest.raises(QuantfidError, match="non-finite"):
        st.metrics_against(1, q)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_rows_in_chunks_equal_the_window(tmp_path: Path, dtype: str) -> None:
    """full_metrics over the store's rows, chunk by chunk (torch input), equals the window."""
    st, logits, toks = make(tmp_path, dtype)
    q = torch.from_numpy(logits[2] * 0.9).to(torch.bfloat16)
    whole = st.metrics_against(2, q)
    np.testing.assert_array_equal(st.rows(2, 1, 5), st.logp(2)[1:5])
    parts = [full_metrics(st.rows(2, a, b), q[a:b], toks[2, 9 + a:9 + b])
             for a, b in ((0, 3), (3, 4), (4, 7))]
    for k, v in whole.arrays().items():
        np.testing.assert_array_equal(np.concatenate([getattr(p, k) for p in parts]), v)
    direct = token_metrics(np.asarray(st.logp(2), np.float32), q.float().numpy(), toks[2, 9:])
    np.testing.assert_allclose(whole.kld, direct.kld, rtol=1e-12)
    with pytest.raises(MismatchError, match="outside"):
        st.rows(2, 4, 8)


def test_check_tokens(tmp_path: Path) -> None:
    st, _, toks = make(tmp_path)
    st.check_tokens(toks)
    other = toks.copy()
    other[2, 3] = (other[2, 3] + 1) % V
    with pytest.raises(MismatchError, match=r"\(2, 3\)"):
        st.check_tokens(other)


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), FullStoreWriter(tmp_path / "ref", model_id="m",
                                                      tokenizer_id="t", vocab_size=V,
                                                      ctx=CTX) as w:
        w.append(np.zeros((7, V)), np.zeros(CTX, np.int32))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    w2 = FullStoreWriter(tmp_path / "ref", model_id="m", tokenizer_id="t", vocab_size=V, ctx=CTX)
    w2.append(np.zeros((7, V)), np.zeros(CTX, np.int32))
    # not closed: a reader sees no store
    with pytest.raises(FormatError, match="not a quantfid store"):
        FullStore(tmp_path / "ref")
    w2.abort()
    assert list(tmp_path.iterdir()) == []


def test_overwrite_rules_and_corruption(tmp_path: Path) -> None:
    st, _, _ = make(tmp_path)
    with pytest.raises(MismatchError, match="overwrite=True"):
        FullStoreWriter(tmp_path / "ref", model_id="m", tokenizer_id="t", vocab_size=V, ctx=CTX)
    make(tmp_path / "x", seed=1)  # a fresh store in an empty dir works
    _, logits2, _ = make(tmp_path / "y")
    w = FullStoreWriter(tmp_path / "y" / "ref", model_id="m2", tokenizer_id="t", vocab_size=V,
                        ctx=CTX, overwrite=True)
    w.append(logits2[0], np.zeros(CTX, np.int32))
    assert w.close().meta.model_id == "m2"
    np.save(tmp_path / "ref" / "windows" / "000001.npy", np.zeros((6, V), np.float32))
    with pytest.raises(FormatError, match=r"shape \(6, 64\)"):
        st.logp(1)
    with pytest.raises(MismatchError, match="out of range"):
        st.logp(3)
    with pytest.raises(MismatchError, match="expected 16 token ids"):
        FullStoreWriter(tmp_path / "z", model_id="m", tokenizer_id="t", vocab_size=V,
                        ctx=CTX).append(np.zeros((7, V)), np.zeros(5))
