"""The compact store's original numpy implementation, kept as an independent oracle.

A copy of the algorithm the store used before its numba kernels (quantfid 64cc683,
``store/compact.py``: ``softmax_parts``, ``select_top``, ``sample_tail``, the writer's chunk loop
and ``CompactStore._rows``), rewritten over plain arrays. Tests check the kernels against it
field by field; ``benchmarks/bench_store.py`` times it as the "before". Not used by quantfid.
"""

from __future__ import annotations

import math

import numpy as np

from quantfid.store.rows import CompactRows

ROWS = 64  # the original writer's rows per pass


def softmax_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (log-softmax, softmax) in float64 with one exp pass."""
    x = np.asarray(x, dtype=np.float64)
    mx = x.max(axis=1, keepdims=True)
    e = np.exp(x - mx)
    s = e.sum(axis=1, keepdims=True)
    return x - (mx + np.log(s)), e / s


def _log(total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(total)


def select_top(logp: np.ndarray, mass: float, cap: int, min_k: int, probs: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(counts, ids (n, cap) by decreasing prob, values, tail_p with the kept entries zeroed)."""
    n, vocab = logp.shape
    cap = min(cap, vocab)
    min_k = min(min_k, cap)
    if cap < vocab:
        part = np.argpartition(-logp, cap - 1, axis=1)[:, :cap]
    else:
        part = np.broadcast_to(np.arange(vocab), (n, vocab)).copy()
    vals = np.take_along_axis(logp, part, axis=1)
    order = np.lexsort((part, -vals), axis=-1)
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    cum = np.cumsum(np.exp(vals), axis=1)
    counts = np.clip((cum < mass).sum(axis=1) + 1, min_k, cap)
    tail_p = probs.copy()
    keep = np.arange(cap)[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(n)[:, None], (n, cap))
    tail_p[rows[keep], ids[keep]] = 0.0
    return counts.astype(np.int32), ids, vals, tail_p


def sample_tail(tail_p: np.ndarray, logp: np.ndarray, m: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Systematic PPS sample of ``m`` ids per row from the tail (ids (n, m), log-probs)."""
    n = tail_p.shape[0]
    ids = np.full((n, m), -1, np.int64)
    u = np.asarray(rng.random(n), dtype=np.float64)
    for i in range(n):
        cum = np.cumsum(tail_p[i])
        if not cum[-1] > 0:
            continue
        pos = (np.arange(m) + u[i]) / m * cum[-1]
        pick = np.minimum(np.searchsorted(cum, pos, side="right"), tail_p.shape[1] - 1)
        pick[tail_p[i, pick] <= 0] = int(np.argmax(tail_p[i]))
        ids[i] = pick
    vals = np.take_along_axis(logp, np.maximum(ids, 0), axis=1)
    return ids, np.where(ids >= 0, vals, -np.inf)


def oracle_rows(logits: np.ndarray, targets: np.ndarray, *, mass: float, cap: int,
                min_k: int, tail_samples: int, rng: np.random.Generator) -> CompactRows:
    """The original writer's rows for (n, V) logits, float64 values (before storage)."""
    parts = []
    for lo in range(0, len(logits), ROWS):
        lp, pr = softmax_parts(logits[lo:lo + ROWS])
        counts, ids, vals, tail_p = select_top(lp, mass, cap, min_k, pr)
        log_tail = _log(tail_p.sum(axis=1))
        keep = np.arange(ids.shape[1])[None, :] < counts[:, None]
        floor = math.log1p(-mass) if mass < 1 else -math.inf
        need = log_tail > floor if tail_samples else np.zeros(len(lp), bool)
        s_ids, s_lp = sample_tail(tail_p[need], lp[need], tail_samples, rng)
        t = targets[lo:lo + ROWS]
        parts.append(CompactRows(counts, ids[keep], vals[keep], log_tail,
                                 lp[np.arange(len(t)), t],
                                 np.where(need, tail_samples, 0).astype(np.int32),
                                 s_ids.reshape(-1), s_lp.reshape(-1)))
    return CompactRows.concat(parts)


def _tail_kl_estimate(rows: np.ndarray, ln_r: np.ndarray, counts: np.ndarray,
                      n: int) -> np.ndarray:
    term = np.expm1(ln_r) - ln_r
    return np.where(counts > 0, np.bincount(rows, term, n) / np.maximum(counts, 1), 0.0)


def _bucket(w: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where(w > 0, w * (la - lb), 0.0)


def oracle_metrics(ref: CompactRows, q: np.ndarray, tgt: np.ndarray,
                   sampled: bool = True) -> dict[str, np.ndarray]:
    """The original ``CompactStore._rows`` over all of ``ref`` (one chunk): metrics by name."""
    n = len(ref)
    lq, eq = softmax_parts(q)
    counts = np.asarray(ref.counts, dtype=np.int64)
    ids = np.asarray(ref.ids, dtype=np.int64)
    lp = np.asarray(ref.logp, dtype=np.float64)
    rows = np.repeat(np.arange(n), counts)
    starts = ref.offsets[:-1]
    lq_top = lq[rows, ids]
    lqt = lq[np.arange(n), tgt]
    p_top, q_top = np.exp(lp), np.exp(lq_top)
    lm_top = np.logaddexp(lp, lq_top) - np.log(2.0)
    eq[rows, ids] = 0.0
    lq_tail = _log(eq.sum(axis=1))
    lp_tail = np.asarray(ref.log_tail, dtype=np.float64)
    p_tail, q_tail = np.exp(lp_tail), np.exp(lq_tail)
    lm_tail = np.logaddexp(lp_tail, lq_tail) - np.log(2.0)
    kl_c = np.bincount(rows, _bucket(p_top, lp, lq_top), n) + _bucket(p_tail, lp_tail, lq_tail)
    tcounts = np.asarray(ref.tail_counts, dtype=np.int64)
    if sampled and len(ref.tail_ids):
        srows = np.repeat(np.arange(n), tcounts)
        ln_r = ((lq[srows, np.asarray(ref.tail_ids, dtype=np.int64)] - lq_tail[srows])
                - (np.asarray(ref.tail_logp, dtype=np.float64) - lp_tail[srows]))
        kl_c = kl_c + p_tail * _tail_kl_estimate(srows, ln_r, tcounts, n)
    lpt = np.asarray(ref.target_logp, dtype=np.float64)
    out = {"kld": kl_c,
           "rkld": np.bincount(rows, _bucket(q_top, lq_top, lp), n)
           + _bucket(q_tail, lq_tail, lp_tail),
           "jsd": 0.5 * (np.bincount(rows, _bucket(p_top, lp, lm_top)
                                     + _bucket(q_top, lq_top, lm_top), n)
                         + _bucket(p_tail, lp_tail, lm_tail) + _bucket(q_tail, lq_tail, lm_tail)),
           "same_top1": ids[starts] == q.argmax(axis=1),
           "ref_top1_prob": np.exp(lp[starts]), "nll_ref": -lpt, "nll_q": -lqt,
           "dp": np.exp(lqt) - np.exp(lpt)}
    for k in (5, 10):
        kk = min(k, int(counts.min()) if n else k, q.shape[1])
        ref_k = ids[starts[:, None] + np.arange(kk)[None, :]]
        q_k = np.argpartition(-q, kk - 1, axis=1)[:, :kk] if kk < q.shape[1] else \
            np.broadcast_to(np.arange(kk), (n, kk))
        inter = (ref_k[:, :, None] == q_k[:, None, :]).any(axis=2).sum(axis=1)
        out[f"top{k}_overlap"] = inter / kk
    return out


def oracle_metrics_chunked(ref: CompactRows, q: np.ndarray, tgt: np.ndarray,
                           sampled: bool = True) -> dict[str, np.ndarray]:
    """``oracle_metrics`` in the original's chunks of ``ROWS`` positions."""
    parts = [oracle_metrics(ref.slice(lo, min(lo + ROWS, len(ref))), q[lo:lo + ROWS],
                            tgt[lo:lo + ROWS], sampled) for lo in range(0, len(ref), ROWS)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
