"""Fidelity from top-k rows: exact when everything is known, bounds hold at every K.

Exact values come from quantfid.metrics.token_metrics on the full distributions (an
independent computation); reference rows are built by the compact store's own writer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantfid.backends.base import TopKRows
from quantfid.errors import MismatchError
from quantfid.metrics import token_metrics
from quantfid.metrics.topk import (
    compact_rows_from_topk,
    mean_kld,
    naive_topk_kld,
    topk_fidelity,
)
from quantfid.store.compact import CompactStore, CompactStoreWriter, compact_rows
from quantfid.store.rows import CompactRows


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


def compact(tmp: Path, logits: np.ndarray, targets: np.ndarray, **kw: object
            ) -> tuple[CompactRows, CompactStore]:
    """The reference's compact rows for (n, V) logits, through the compact store writer."""
    n, vocab = logits.shape
    tokens = np.concatenate([[0], targets]).astype(np.int64)
    w = CompactStoreWriter(tmp / f"store{len(list(tmp.iterdir()))}", model_id="ref",
                           tokenizer_id="t", vocab_size=vocab, ctx=n + 1, scoring="all",
                           rng=np.random.default_rng(3), **kw)  # type: ignore[arg-type]
    w.append(logits, tokens)
    s = w.close()
    rows = CompactRows(np.asarray(s.counts), np.asarray(s.ids, np.int64),
                       np.asarray(s.values), np.asarray(s.log_tail),
                       np.asarray(s.target_logp), np.asarray(s.tail_counts),
                       np.asarray(s.tail_ids, np.int64), np.asarray(s.tail_values))
    return rows, s


def compact64(logits: np.ndarray, targets: np.ndarray, cap: int = 256, mass: float = 1 - 1e-4,
              min_k: int = 10, tail_samples: int = 32) -> CompactRows:
    """Compact rows by the store's own selection and tail sampler (``compact_rows``: float64
    on the CPU, so the bounds can be checked to 1e-9)."""
    return compact_rows(np.asarray(logits, np.float64), targets, mass=mass, cap=cap, min_k=min_k,
                        tail_samples=tail_samples, rng=np.random.default_rng(5))


def topk(lq: np.ndarray, k: int, targets: np.ndarray, *, target: bool = True,
         chosen: np.ndarray | None = None) -> TopKRows:
    """What a server returns: its top k (unsorted, as a server may), the target's log-prob."""
    n, vocab = lq.shape
    k = min(k, vocab)
    part = np.argpartition(-lq, k - 1, axis=1)[:, :k]
    t_lq = lq[np.arange(n), targets] if target else np.full(n, np.nan)
    c_lq = None if chosen is None else np.where(chosen >= 0, np.take_along_axis(
        lq, np.maximum(chosen, 0), axis=1), np.nan)
    return TopKRows(part, np.take_along_axis(lq, part, axis=1), t_lq, chosen, c_lq)


def synthetic(seed: int, n: int, vocab: int, noise: float, df: float = 3.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = rng.standard_t(df, size=(n, vocab)) * 2.5
    q = ref + rng.normal(size=ref.shape) * noise
    p = np.exp(log_softmax(ref))
    targets = np.array([rng.choice(vocab, p=row) for row in p])
    return ref, q, targets


def exact_kld(ref: np.ndarray, q: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return token_metrics(ref.astype(np.float64), q.astype(np.float64), targets).kld


def test_whole_vocabulary_is_exact() -> None:
    ref, q, t = synthetic(0, 40, 300, 0.3)
    rows = compact64(ref, t, cap=300, mass=1.0)  # keep every id (cap = V)
    assert np.all(np.exp(rows.log_tail) == 0)
    res = topk_fidelity(rows, topk(log_softmax(q), 300, t), t)
    tm = token_metrics(ref, q, t)
    np.testing.assert_allclose(res.metrics.kld, tm.kld, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.kld_bound_low, tm.kld, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.kld_bound_high, tm.kld, rtol=1e-9, atol=1e-12)
    for f in ("nll_ref", "nll_q", "dp", "ref_top1_prob", "top5_overlap", "top10_overlap"):
        np.testing.assert_allclose(getattr(res.metrics, f), getattr(tm, f), rtol=1e-6,
                                   atol=1e-9, err_msg=f)
    np.testing.assert_array_equal(res.metrics.same_top1, tm.same_top1)


def test_all_known_equals_compact_store(tmp_path: Path) -> None:
    """K = V against capped rows with tail samples: the compact store's own estimate."""
    ref, q, t = synthetic(1, 30, 400, 0.5)
    rows, store = compact(tmp_path, ref, t, cap=24, min_k=10, tail_samples=16)
    assert rows.tail_counts.sum() > 0
    res = topk_fidelity(rows, topk(log_softmax(q), 400, t), t)
    want = store.metrics_against(0, q).kld
    np.testing.assert_allclose(res.metrics.kld, want, rtol=1e-7, atol=1e-10)
    assert np.all(np.isinf(res.kld_bound_high))  # the tail's individual p are unknown


def test_chosen_ids_path_equals_compact_store(tmp_path: Path) -> None:
    """SGLang: ask for the reference's kept ids and tail samples; K itself stays small."""
    ref, q, t = synthetic(2, 25, 500, 0.4)
    rows, store = compact(tmp_path, ref, t, cap=32, min_k=10, tail_samples=8)
    n, width = len(rows), int(rows.counts.max() + rows.tail_counts.max())
    chosen = np.full((n, width), -1, np.int64)
    o, so = rows.offsets, rows.tail_offsets
    for i in range(n):
        ids = np.concatenate([rows.ids[o[i]:o[i + 1]], rows.tail_ids[so[i]:so[i + 1]]])
        chosen[i, :len(ids)] = ids
    res = topk_fidelity(rows, topk(log_softmax(q), 5, t, chosen=chosen), t)
    np.testing.assert_allclose(res.metrics.kld, store.metrics_against(0, q).kld, rtol=1e-7,
                               atol=1e-10)


@pytest.mark.parametrize(("seed", "noise", "df"), [(3, 0.05, 3.0), (4, 0.8, 3.0),
                                                   (5, 3.0, 2.0), (6, 0.3, 30.0)])
def test_exact_within_bounds_at_every_k(seed: int, noise: float, df: float) -> None:
    ref, q, t = synthetic(seed, 30, 800, noise, df)
    lq = log_softmax(q)
    exact = exact_kld(ref, q, t)
    for kw in ({}, {"cap": 16, "tail_samples": 0}, {"cap": 16, "tail_samples": 4}):
        rows = compact64(ref, t, **kw)  # type: ignore[arg-type]
        for k in (1, 5, 20, 64, 256, 800):
            for target in (True, False):
                res = topk_fidelity(rows, topk(lq, k, t, target=target), t)
                low, high = res.kld_bound_low, res.kld_bound_high
                assert np.all(low <= exact * (1 + 1e-9) + 1e-13), (k, target, kw)
                assert np.all(exact <= high * (1 + 1e-9) + 1e-13), (k, target, kw)
                assert np.all(res.metrics.kld >= low)
                m = mean_kld(res)
                assert m.low <= float(exact.mean()) * (1 + 1e-9) <= m.high * (1 + 1e-9) + 1e-13


def test_bounds_hold_on_float32_store_rows(tmp_path: Path) -> None:
    """Rows as the compact store keeps them (float32): the bound holds up to their rounding."""
    ref, q, t = synthetic(13, 30, 800, 0.05, 3.0)
    exact = exact_kld(ref, q, t)
    rows, _ = compact(tmp_path, ref, t)
    for k in (1, 20, 800):
        res = topk_fidelity(rows, topk(log_softmax(q), k, t), t)
        assert np.all(res.kld_bound_low <= exact + 1e-7), k


def test_adversarial_quant_within_bounds() -> None:
    """A quant that reverses the reference's ranking: little is known, the bound holds."""
    rng = np.random.default_rng(7)
    ref = rng.normal(size=(20, 300)) * 3
    q = -ref + rng.normal(size=ref.shape) * 0.1
    t = rng.integers(0, 300, 20)
    exact = exact_kld(ref, q, t)
    rows = compact64(ref, t, cap=40)
    for k in (1, 3, 10, 50, 300):
        res = topk_fidelity(rows, topk(log_softmax(q), k, t), t)
        assert np.all(res.kld_bound_low <= exact * (1 + 1e-9)), k
        assert np.all(res.metrics.kld >= res.kld_bound_low), k


def test_caps_tighten_the_bound() -> None:
    """The reference's top id demoted to ~0 in the quant: its q is capped by the quant's K-th
    log-prob, so the bound exceeds the coarse bucket (A exact + one bucket for the rest)."""
    rng = np.random.default_rng(14)
    ref = rng.normal(size=(20, 300)) * 2
    ref[:, 0] += 12  # a confident top id
    q = ref + rng.normal(size=ref.shape) * 0.05
    q[:, 0] -= 30
    t = rng.integers(1, 300, 20)
    lp, lq = log_softmax(ref), log_softmax(q)
    exact = exact_kld(ref, q, t)
    rows = compact64(ref, t, cap=40)
    qr = topk(lq, 5, t, target=False)
    res = topk_fidelity(rows, qr, t)
    coarse = np.empty(20)
    o = rows.offsets
    for i in range(20):
        a = np.intersect1d(rows.ids[o[i]:o[i + 1]], qr.ids[i])
        pa, qa = np.exp(lp[i, a]), np.exp(lq[i, a])
        pu, qu = 1 - pa.sum(), 1 - qa.sum()
        coarse[i] = (pa * (lp[i, a] - lq[i, a])).sum() + pu * np.log(pu / qu)
    assert np.all(res.kld_bound_low <= exact)
    assert np.all(res.kld_bound_low >= coarse - 1e-9)
    assert np.mean(res.kld_bound_low) > np.mean(coarse) + 1.0


def test_unknown_target_gives_nan_nll_q(tmp_path: Path) -> None:
    ref, q, t = synthetic(8, 10, 200, 0.3)
    rows, _ = compact(tmp_path, ref, t)
    lq = log_softmax(q)
    res = topk_fidelity(rows, topk(lq, 3, t, target=False), t)
    in_top = (np.argsort(-lq, axis=1)[:, :3] == t[:, None]).any(axis=1)
    assert np.isnan(res.metrics.nll_q[~in_top]).all()
    np.testing.assert_allclose(res.metrics.nll_q[in_top], -lq[in_top, t[in_top]])
    np.testing.assert_allclose(res.metrics.nll_ref, -log_softmax(ref)[np.arange(10), t],
                               rtol=1e-6)
    assert res.metrics.top10_overlap is None  # K = 3 cannot tell


def test_reverse_case_reference_behind_a_server(tmp_path: Path) -> None:
    ref, q, t = synthetic(9, 30, 500, 0.5)
    lp = log_softmax(ref)
    rrows = topk(lp, 20, t)
    rows = compact_rows_from_topk(rrows)
    assert rows.counts.tolist() == [20] * 30
    o = rows.offsets
    for i in range(30):
        assert np.all(np.diff(rows.logp[o[i]:o[i + 1]]) <= 0)
        top = np.sort(np.argsort(-lp[i])[:20])
        np.testing.assert_array_equal(np.sort(rows.ids[o[i]:o[i + 1]]), top)
    np.testing.assert_allclose(np.exp(rows.log_tail),
                               1 - np.exp(np.sort(lp, axis=1)[:, -20:]).sum(axis=1), rtol=1e-9,
                               atol=1e-15)
    np.testing.assert_allclose(rows.target_logp, lp[np.arange(30), t])
    exact = exact_kld(ref, q, t)
    for k in (5, 20, 100):
        res = topk_fidelity(rows, topk(log_softmax(q), k, t), t)
        assert np.all(res.kld_bound_low <= exact * (1 + 1e-9))


def test_reverse_case_full_rows_tail_is_empty() -> None:
    lp = log_softmax(np.random.default_rng(10).normal(size=(4, 6)))
    t = np.zeros(4, np.int64)
    rows = compact_rows_from_topk(topk(lp, 6, t))
    assert np.all(rows.log_tail < np.log(1e-12))


def test_naive_is_exact_only_when_complete() -> None:
    ref, q, t = synthetic(11, 20, 150, 0.4)
    lp, lq = log_softmax(ref), log_softmax(q)
    exact = exact_kld(ref, q, t)
    full = naive_topk_kld(topk(lp, 150, t), topk(lq, 150, t), 150)
    np.testing.assert_allclose(full, exact, rtol=1e-9, atol=1e-12)
    five = naive_topk_kld(topk(lp, 5, t), topk(lq, 5, t), 150)
    assert not np.allclose(five, exact, rtol=0.05)


def test_bad_shapes_are_clear(tmp_path: Path) -> None:
    ref, q, t = synthetic(12, 5, 50, 0.1)
    rows, _ = compact(tmp_path, ref, t)
    with pytest.raises(MismatchError, match="reference rows"):
        topk_fidelity(rows, topk(log_softmax(q[:3]), 4, t[:3]), t)


def test_ids_marked_unknown_have_no_cap() -> None:
    """A server that cannot name some of its top-K ids (llama-cpp-python's shared text keys)
    marks them with a NaN log-prob: no cap is claimed for them, so the bound still holds
    where leaving them out (and capping them at the K-th log-prob) would break it."""
    rng = np.random.default_rng(15)
    ref = rng.normal(size=(20, 300)) * 2
    ref[:, 7] += 8  # id 7 is everyone's top id ...
    q = ref + rng.normal(size=ref.shape) * 0.05
    t = rng.integers(0, 300, 20)
    lq = log_softmax(q)
    exact = exact_kld(ref, q, t)
    rows = compact64(ref, t, cap=40)
    qr = topk(lq, 10, t, target=False)
    marked = np.where(qr.ids == 7, np.nan, qr.logp)  # ... and the server cannot name it
    res = topk_fidelity(rows, TopKRows(qr.ids, marked, qr.target_logp), t)
    assert np.all(res.kld_bound_low <= exact * (1 + 1e-9) + 1e-13)
    dropped = np.where(qr.ids == 7, -1, qr.ids)
    wrong = topk_fidelity(rows, TopKRows(dropped, qr.logp, qr.target_logp), t)
    assert np.any(wrong.kld_bound_low > exact)  # capping id 7 at q_K claims far too much
