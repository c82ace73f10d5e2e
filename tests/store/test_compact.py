"""Compact store: top-k + exact tail bucket + tail sample; bounds, exactness, real-model accuracy."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from scipy.special import log_softmax

from quantfid.errors import FormatError, MismatchError
from quantfid.metrics.token import token_metrics
from quantfid.store.compact import CompactStore, CompactStoreWriter, compact_rows
from quantfid.store.full import FullStoreWriter

V, CTX = 400, 32  # llama.cpp scoring: 15 scored tokens per window


def write(tmp: Path, logits: np.ndarray, toks: np.ndarray, name: str = "c", **kw: object
          ) -> CompactStore:
    with CompactStoreWriter(tmp / name, model_id="m", tokenizer_id="t", vocab_size=logits.shape[-1],
                            ctx=toks.shape[1], rng=np.random.default_rng(0), **kw) as w:  # type: ignore[arg-type]
        for i in range(len(toks)):
            w.append(logits[i], toks[i])
    return CompactStore(tmp / name)


def data(seed: int = 0, n_win: int = 2, noise: float = 0.3
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = (rng.standard_t(4, size=(n_win, 15, V)) * 2.0).astype(np.float32)
    q = (ref + rng.normal(size=ref.shape) * noise).astype(np.float32)
    toks = rng.integers(0, V, size=(n_win, CTX)).astype(np.int32)
    return ref, q, toks


def coarse_kl(lp: np.ndarray, lq: np.ndarray, top: np.ndarray) -> float:
    """KL with the complement of ``top`` merged into one bucket, plain numpy."""
    tail = np.ones(len(lp), bool)
    tail[top] = False
    p, q = np.exp(lp), np.exp(lq)
    kl = float(np.sum(p[top] * (lp[top] - lq[top])))
    if tail.any():
        pt, qt = p[tail].sum(), q[tail].sum()
        kl += pt * np.log(pt / qt)
    return kl


def test_compact_rows_reach_mass_and_sort() -> None:
    """Adaptive k, order, direct-sum tail, exact target log-prob: against plain numpy."""
    rng = np.random.default_rng(1)
    lp = log_softmax(rng.normal(size=(5, V)) * 3, axis=1)
    tgt = np.array([0, 5, -1, V - 1, 17])
    rows = compact_rows(lp, tgt, mass=0.99, cap=300, min_k=10, tail_samples=0,
                        rng=np.random.default_rng(0))
    o = rows.offsets
    for i in range(5):
        k = int(rows.counts[i])
        ids, vals = rows.ids[o[i]:o[i + 1]], rows.logp[o[i]:o[i + 1]]
        order = np.argsort(-lp[i], kind="stable")
        np.testing.assert_array_equal(ids, order[:k])
        np.testing.assert_allclose(vals, lp[i, ids], rtol=1e-13)
        assert np.exp(vals).sum() >= 0.99 or k == 300
        assert k == 10 or np.exp(vals[:k - 1]).sum() < 0.99
        tail = np.setdiff1d(np.arange(V), ids)
        np.testing.assert_allclose(rows.log_tail[i], np.log(np.exp(lp[i, tail]).sum()), rtol=1e-12)
        if tgt[i] >= 0:
            assert rows.target_logp[i] == pytest.approx(lp[i, tgt[i]], rel=1e-13)
        else:
            assert np.isnan(rows.target_logp[i])
    assert len(rows.tail_ids) == 0 and not rows.tail_counts.any()


def test_bucket_kl_is_exact_coarse_graining_and_lower_bound(tmp_path: Path) -> None:
    ref, q, toks = data()
    st = write(tmp_path, ref, toks, cap=40, min_k=10)
    for w in range(2):
        tm = st.metrics_against(w, q[w], tail="bucket")
        full = token_metrics(ref[w], q[w], toks[w, 17:])
        lp = log_softmax(ref[w].astype(np.float64), axis=1)
        lq = log_softmax(q[w].astype(np.float64), axis=1)
        for t in range(15):
            top = np.argsort(-lp[t], kind="stable")[:int(st.counts[w * 15 + t])]
            assert tm.kld[t] == pytest.approx(coarse_kl(lp[t], lq[t], top), rel=1e-5, abs=1e-9)
            # the documented bound: 0 <= KL - KL_c <= 2 eps_T p_T
            tail = np.setdiff1d(np.arange(V), top)
            eps = np.abs(lp[t, tail] - lq[t, tail]).max()
            gap = full.kld[t] - tm.kld[t]
            assert -1e-7 <= gap <= 2 * eps * np.exp(lp[t, tail]).sum() + 1e-7
        # exact parts
        np.testing.assert_array_equal(tm.same_top1, full.same_top1)
        np.testing.assert_allclose(tm.nll_ref, full.nll_ref, rtol=1e-6)
        np.testing.assert_allclose(tm.nll_q, full.nll_q, rtol=1e-9)
        np.testing.assert_allclose(tm.dp, full.dp, atol=1e-7)
        np.testing.assert_allclose(tm.ref_top1_prob, full.ref_top1_prob, rtol=1e-6)
        np.testing.assert_allclose(tm.top10_overlap, full.top10_overlap)
        np.testing.assert_allclose(tm.top5_overlap, full.top5_overlap)
        # lower bounds (up to the float32 storage of the reference log-probs)
        assert np.all(tm.rkld <= full.rkld * (1 + 1e-6) + 1e-9)
        assert np.all(tm.jsd <= full.jsd * (1 + 1e-6) + 1e-9)


def test_sampled_tail_is_unbiased() -> None:
    """Many tail samples: the corrected KLD converges to the full one (bucket alone is low)."""
    ref, q, toks = data(seed=2, n_win=1, noise=0.5)
    full = token_metrics(ref[0], q[0], toks[0, 17:]).kld

    def run(tmp: Path) -> tuple[np.ndarray, np.ndarray]:
        st = write(tmp, ref, toks, cap=10, tail_samples=4000)
        return st.metrics_against(0, q[0]).kld, st.metrics_against(0, q[0], tail="bucket").kld

    import tempfile

    with tempfile.TemporaryDirectory() as d:
        sampled, bucket = run(Path(d))
    assert bucket.mean() < 0.9 * full.mean()
    assert sampled.mean() == pytest.approx(full.mean(), rel=0.01)


def test_no_tail_when_cap_covers_vocab(tmp_path: Path) -> None:
    ref, q, toks = data(seed=3, n_win=1)
    st = write(tmp_path, ref, toks, cap=V, mass=1.0)
    assert np.all(np.asarray(st.counts) == V) and np.all(np.isneginf(np.asarray(st.log_tail)))
    tm = st.metrics_against(0, q[0])
    # float32 storage of the log-probs: ~1e-7 relative per value
    np.testing.assert_allclose(tm.kld, token_metrics(ref[0], q[0]).kld, rtol=1e-4, atol=1e-7)


def test_reader_refuses_damage_and_mismatch(tmp_path: Path) -> None:
    ref, q, toks = data()
    st = write(tmp_path, ref, toks)
    st.check_tokens(toks)
    bad = toks.copy()
    bad[0, 0] += 1
    with pytest.raises(MismatchError, match=r"\(0, 0\)"):
        st.check_tokens(bad)
    with pytest.raises(MismatchError, match="targets differ"):
        st.metrics_against(0, q[0], targets=np.zeros(15, np.int64))
    with pytest.raises(MismatchError, match="tail must be"):
        st.metrics_against(0, q[0], tail="none")
    ids = tmp_path / "c" / "ids.bin"
    ids.write_bytes(ids.read_bytes()[:-2])
    with pytest.raises(FormatError, match=r"ids\.bin: expected"):
        CompactStore(tmp_path / "c")
    with pytest.raises(FormatError, match="not a compact store"):
        full = FullStoreWriter(tmp_path / "f", model_id="m", tokenizer_id="t", vocab_size=V, ctx=CTX)
        full.append(ref[0], toks[0])
        full.close()
        CompactStore(tmp_path / "f")


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    ref, _, toks = data()
    with pytest.raises(RuntimeError), CompactStoreWriter(
            tmp_path / "c", model_id="m", tokenizer_id="t", vocab_size=V, ctx=CTX) as w:
        w.append(ref[0], toks[0])
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def _rtn(module: object, bits: int) -> object:
    """A copy of ``module`` with every Linear weight rounded per output row to ``bits`` bits."""
    import torch

    q = copy.deepcopy(module)
    qmax = 2 ** (bits - 1) - 1
    with torch.no_grad():
        for m in q.modules():  # type: ignore[attr-defined]
            if isinstance(m, torch.nn.Linear):
                s = m.weight.abs().amax(dim=1, keepdim=True) / qmax
                m.weight.copy_(torch.clamp(torch.round(m.weight / s), -qmax - 1, qmax) * s)
    return q


@pytest.mark.slow
def test_real_model_compact_within_one_percent(tmp_path: Path) -> None:
    """SmolLM2-135M on our own prose: compact mean KLD within 1 % of the full store for a
    near-lossless (8-bit) and a lossy (4-bit) per-row RTN quant; same top-1 and NLL exact;
    >= 50x smaller than llama.cpp's 2 V bytes per token."""
    import os

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    lm = load_hf(None, device="cpu")
    text = (Path(__file__).parent / "fixtures" / "prose.txt").read_text()
    ids = lm.tokenizer(text, return_tensors="np")["input_ids"][0]
    ctx = 160
    windows = ids[: 2 * ctx].reshape(2, ctx).astype(np.int64)

    def logits(mod: object) -> np.ndarray:
        with torch.no_grad():
            out = mod(torch.from_numpy(windows)).logits  # type: ignore[operator]
        return out[:, :-1].float().numpy()  # scoring "all": positions 0..ctx-2

    ref = logits(lm.module)
    vocab = ref.shape[-1]
    full = FullStoreWriter(tmp_path / "full", model_id="m", tokenizer_id="t", vocab_size=vocab,
                           ctx=ctx, scoring="all")
    comp = CompactStoreWriter(tmp_path / "compact", model_id="m", tokenizer_id="t",
                              vocab_size=vocab, ctx=ctx, scoring="all",
                              rng=np.random.default_rng(0))
    for w in range(2):
        full.append(ref[w], windows[w])
        comp.append(ref[w], windows[w])
    fs, cs = full.close(), comp.close()
    bytes_per_token = cs.nbytes() / (2 * (ctx - 1))
    assert 2 * vocab / bytes_per_token >= 50
    for bits in (8, 4):
        q = logits(_rtn(lm.module, bits))
        a = [fs.metrics_against(w, q[w]) for w in range(2)]
        b = [cs.metrics_against(w, q[w]) for w in range(2)]
        kl_full = np.concatenate([t.kld for t in a])
        kl_comp = np.concatenate([t.kld for t in b])
        assert kl_comp.mean() == pytest.approx(kl_full.mean(), rel=0.01), bits
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x.same_top1, y.same_top1)
            np.testing.assert_allclose(x.nll_ref, y.nll_ref, rtol=1e-5)
            np.testing.assert_allclose(x.dp, y.dp, atol=1e-6)
