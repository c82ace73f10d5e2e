"""Fused numba kernels for compact reference rows (top-k + tail), on the CPU, in float64.

The definitions are in :mod:`quantfid.store.compact`; these kernels compute them fast:

- ``select_rows`` (writer): per row the log-normaliser, the adaptive top-k (a bounded heap over
  the float64 log-probs, then sorted by (log-prob descending, id ascending), as ``argmax``), the
  tail mass as a direct sum over the ids left out (never ``1 - sum``) and the target's log-prob.
- ``sample_rows`` (writer): systematic PPS samples from the tail (the same positions as
  ``np.searchsorted(cumsum(p_T), (j + u) / m * total, side="right")``).
- ``compare_rows`` (comparison): every per-token metric of a quant row against a compact row
  with two passes over the vocabulary: the quant's top 10 (its maximum first; blocks that
  cannot enter are skipped after one vectorised max), then one exp pass; the kept ids are
  marked in a scratch array, so the quant's tail mass is a direct sum in that pass.

Inputs are float32 or float64 logits (any scale: rows are normalised here, each value widened
to float64 when read, so no float64 copy of a chunk is made). Sums are float64 with the
vectorisable ``fexp`` of :mod:`quantfid.metrics.kernel` (relative error < 1e-15). Rows run in
parallel (``prange``) over blocks of rows, each block with its own O(V) scratch, so memory is
O(threads x V) beyond the inputs and outputs. A row with a NaN or an infinity gets ``bad = 1``
(the caller names it); its other outputs are meaningless.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from quantfid.metrics.kernel import _FM, _LN2, CACHE, _row_max, fexp

BLOCKS_PER_THREAD = 4
_BLOCK = 32  # values per skip test in top_sorted


def n_blocks(n_rows: int) -> int:
    """Blocks of rows for the parallel loops (each block allocates its scratch once)."""
    return max(1, min(n_rows, numba.get_num_threads() * BLOCKS_PER_THREAD))


@njit(cache=CACHE, inline="always")
def _worse(va: float, ia: int, vb: float, ib: int) -> bool:
    """(va, ia) ranks below (vb, ib): lower value, or equal value and higher id."""
    return va < vb or (va == vb and ia > ib)


@njit(cache=CACHE)
def _sift_down(hv: np.ndarray, hi: np.ndarray, n: int, pos: int) -> None:
    v = hv[pos]
    i = hi[pos]
    while True:
        c = 2 * pos + 1
        if c >= n:
            break
        if c + 1 < n and _worse(hv[c + 1], hi[c + 1], hv[c], hi[c]):
            c += 1
        if not _worse(hv[c], hi[c], v, i):
            break
        hv[pos] = hv[c]
        hi[pos] = hi[c]
        pos = c
    hv[pos] = v
    hi[pos] = i


@njit(fastmath=_FM, cache=CACHE, inline="always")
def _block_max(x: np.ndarray, lo: int) -> float:
    m = np.float64(x[lo])
    for j in range(lo + 1, lo + _BLOCK):
        m = max(m, np.float64(x[j]))
    return m


@njit(cache=CACHE)
def top_sorted(x: np.ndarray, shift: float, k: int, hv: np.ndarray, hi: np.ndarray) -> int:
    """The ``k`` largest ``float64(x[v]) - shift`` into ``hv`` with their ids in ``hi``, sorted by
    (value descending, id ascending); returns min(k, len(x)). A min-heap of the best k so far;
    blocks of ``_BLOCK`` values whose maximum cannot enter it are skipped after one
    vectorised max (most of a row, once the heap holds large values)."""
    vocab = x.shape[0]
    n = min(k, vocab)
    for j in range(n):
        hv[j] = np.float64(x[j]) - shift
        hi[j] = j
    for j in range(n // 2 - 1, -1, -1):
        _sift_down(hv, hi, n, j)
    j = n
    while j < vocab:
        if j + _BLOCK <= vocab and not _block_max(x, j) - shift > hv[0]:
            j += _BLOCK
            continue
        stop = min(j + _BLOCK, vocab)
        while j < stop:
            v = np.float64(x[j]) - shift
            if v > hv[0]:  # an equal value loses: its id is higher than every kept one
                hv[0] = v
                hi[0] = j
                _sift_down(hv, hi, n, 0)
            j += 1
    for end in range(n - 1, 0, -1):  # heap sort: the worst goes last
        hv[0], hv[end] = hv[end], hv[0]
        hi[0], hi[end] = hi[end], hi[0]
        _sift_down(hv, hi, end, 0)
    return n


@njit(fastmath=_FM, cache=CACHE, error_model="numpy")
def masked_exp_sums(x: np.ndarray, m: float, mark: np.ndarray) -> tuple[float, float, float]:
    """(sum_v e^(x_v - m), the same over unmarked v, a NaN-detector: NaN iff x has a NaN/inf)."""
    z = 0.0
    zt = 0.0
    chk = 0.0
    for v in range(x.shape[0]):
        xv = np.float64(x[v])
        e = fexp(xv - m)
        z += e
        zt += 0.0 if mark[v] else e
        chk += xv * 0.0
    return z, zt, chk


@njit(cache=CACHE)
def _select_row(r: np.ndarray, tgt: int, mass: float, cap: int, min_k: int, mark: np.ndarray,
                hv: np.ndarray, hi: np.ndarray) -> tuple[int, float, float, float, bool]:
    """(count, lse, log_tail, target log-prob, bad) of one row; hv/hi get the top ``cap``."""
    m = _row_max(r)
    z, _, chk = masked_exp_sums(r, m, mark)  # nothing marked yet: z twice
    if not math.isfinite(z + m + chk):
        return 0, 0.0, 0.0, 0.0, True
    lz = math.log(z)
    lse = m + lz
    k = top_sorted(r, lse, cap, hv, hi)
    acc = 0.0
    c = 0 if mass < 1.0 else k  # mass 1 keeps all ``cap`` (reaching 1 would be rounding)
    while c < k:
        acc += math.exp(hv[c])
        if not acc < mass:
            break
        c += 1
    count = min(max(c + 1, min_k), k)
    for j in range(count):
        mark[hi[j]] = 1
    _, zt, _ = masked_exp_sums(r, m, mark)
    for j in range(count):
        mark[hi[j]] = 0
    log_tail = math.log(zt) - lz if zt > 0 else -math.inf
    tlp = np.float64(r[tgt]) - lse if tgt >= 0 else math.nan
    return count, lse, log_tail, tlp, False


@njit(parallel=True, cache=CACHE)
def select_rows(x: np.ndarray, targets: np.ndarray, mass: float, cap: int, min_k: int,
                blocks: int, counts: np.ndarray, ids: np.ndarray, vals: np.ndarray,
                lse: np.ndarray, log_tail: np.ndarray, target_logp: np.ndarray,
                bad: np.ndarray) -> None:
    """Writer side, every row: ids/vals (n, cap) get the top ``cap`` (ids, log-probs), sorted;
    counts the adaptive k (smallest k whose mass reaches ``mass``, clamped to [min_k, cap];
    ``cap`` when ``mass >= 1``);
    log_tail ln of the mass outside the first ``counts`` (direct sum; -inf if none);
    target_logp the log-prob of ``targets`` (NaN where < 0); lse the log-normaliser."""
    n, vocab = x.shape
    for b in prange(blocks):
        mark = np.zeros(vocab, np.uint8)
        for i in range(b, n, blocks):
            c, ls, lt, tl, bd = _select_row(x[i], targets[i], mass, cap, min_k, mark,
                                            vals[i], ids[i])
            counts[i] = c
            lse[i] = ls
            log_tail[i] = lt
            target_logp[i] = tl
            bad[i] = bd


@njit(fastmath=_FM, cache=CACHE, error_model="numpy")
def _tail_probs(r: np.ndarray, lse: float, mark: np.ndarray, out: np.ndarray) -> None:
    for v in range(r.shape[0]):
        p = fexp(np.float64(r[v]) - lse)
        out[v] = 0.0 if mark[v] else p


@njit(cache=CACHE)
def _sample_row(r: np.ndarray, lse: float, kept: np.ndarray, u: float, mark: np.ndarray,
                cum: np.ndarray, out_ids: np.ndarray, out_lp: np.ndarray) -> None:
    vocab = r.shape[0]
    m = out_ids.shape[0]
    for j in range(kept.shape[0]):
        mark[kept[j]] = 1
    _tail_probs(r, lse, mark, cum)
    best = 0
    for v in range(vocab):  # argmax of the tail probabilities, then cumulate in place
        if cum[v] > cum[best]:
            best = v
    acc = 0.0
    for v in range(vocab):
        acc += cum[v]
        cum[v] = acc
    if not acc > 0:
        out_ids[:] = -1
        out_lp[:] = -math.inf
    else:
        v = 0
        for s in range(m):
            pos = (s + u) / m * acc
            while v < vocab and cum[v] <= pos:  # searchsorted(cum, pos, side="right")
                v += 1
            pick = min(v, vocab - 1)
            if mark[pick] or fexp(np.float64(r[pick]) - lse) <= 0.0:  # float edge at the total
                pick = best
            out_ids[s] = pick
            out_lp[s] = np.float64(r[pick]) - lse
    for j in range(kept.shape[0]):
        mark[kept[j]] = 0


@njit(parallel=True, cache=CACHE)
def sample_rows(x: np.ndarray, rows: np.ndarray, lse: np.ndarray, counts: np.ndarray,
                ids: np.ndarray, u: np.ndarray, blocks: int, out_ids: np.ndarray,
                out_lp: np.ndarray) -> None:
    """Writer side: ``out_ids[j]`` (m ids) drawn from the tail of row ``rows[j]`` (its ids
    outside ``ids[row, :counts[row]]``) at cumulative tail mass (s + u[j]) / m of the total,
    s = 0..m-1, with their log-probs in ``out_lp``; -1 / -inf for an empty tail."""
    vocab = x.shape[1]
    n = rows.shape[0]
    for b in prange(blocks):
        mark = np.zeros(vocab, np.uint8)
        cum = np.empty(vocab, np.float64)
        for j in range(b, n, blocks):
            i = rows[j]
            _sample_row(x[i], lse[i], ids[i, :counts[i]], u[j], mark, cum, out_ids[j],
                        out_lp[j])


@njit(cache=CACHE, inline="always")
def _bucket(w: float, la: float, lb: float) -> float:
    """w (la - lb), with an empty bucket (w = 0) contributing 0."""
    return w * (la - lb) if w > 0 else 0.0


@njit(cache=CACHE, inline="always")
def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf and b == -math.inf:
        return -math.inf
    hi = max(a, b)
    return hi + math.log1p(math.exp(-abs(a - b)))


@njit(cache=CACHE)
def _kept_sums(r: np.ndarray, shift: float, ids: np.ndarray, logp: np.ndarray
               ) -> tuple[float, float, float]:
    """(KL, reverse KL, 2 JS) over the kept entries; ln q(v) = r[v] - shift."""
    kl = 0.0
    rk = 0.0
    js = 0.0
    for j in range(ids.shape[0]):
        lp = np.float64(logp[j])
        lq = np.float64(r[ids[j]]) - shift
        p = math.exp(lp)
        q = math.exp(lq)
        lm = _logaddexp(lp, lq) - _LN2
        kl += _bucket(p, lp, lq)
        rk += _bucket(q, lq, lp)
        js += _bucket(p, lp, lm) + _bucket(q, lq, lm)
    return kl, rk, js


@njit(cache=CACHE)
def _tail_estimate(r: np.ndarray, shift: float, lq_t: float, lp_t: float, ids: np.ndarray,
                   logp: np.ndarray) -> float:
    """mean_j (r_j - 1 - ln r_j), ln r_j = ln q_T(v_j) - ln p_T(v_j) (both conditional on the
    tail): an unbiased estimate of KL(P_T || Q_T) from samples v_j ~ P_T; 0 without samples."""
    n = ids.shape[0]
    if n == 0:
        return 0.0
    acc = 0.0
    for j in range(n):
        ln_r = ((np.float64(r[ids[j]]) - shift) - lq_t) - (np.float64(logp[j]) - lp_t)
        acc += math.expm1(ln_r) - ln_r
    return acc / n


@njit(cache=CACHE)
def _overlap(ref_ids: np.ndarray, q_ids: np.ndarray, k: int) -> float:
    """|first k of ref_ids & first k of q_ids| / k (NaN when k = 0)."""
    if k == 0:
        return math.nan
    c = 0
    for a in range(k):
        for b in range(k):
            if ref_ids[a] == q_ids[b]:
                c += 1
                break
    return c / k


@njit(cache=CACHE)
def _compare_row(r: np.ndarray, tgt: int, ids: np.ndarray, logp: np.ndarray, lp_t: float,
                 t_logp: float, s_ids: np.ndarray, s_logp: np.ndarray, sampled: bool,
                 mark: np.ndarray, hv: np.ndarray, hi: np.ndarray, out: np.ndarray) -> bool:
    """One row's metrics into out[:9] (kld, rkld, jsd, nll_ref, nll_q, dp, ref_top1_prob,
    top5, top10) and out[9] = same top-1; returns False when the row is not finite."""
    kq = top_sorted(r, 0.0, 10, hv, hi)  # the quant's top 10; hv[0] is its maximum
    mq = hv[0]
    for j in range(ids.shape[0]):
        mark[ids[j]] = 1
    z, zt, chk = masked_exp_sums(r, mq, mark)
    for j in range(ids.shape[0]):
        mark[ids[j]] = 0
    if not math.isfinite(z + mq + chk):
        return False
    shift = mq + math.log(z)
    lq_t = math.log(zt) + mq - shift if zt > 0 else -math.inf
    kl, rk, js = _kept_sums(r, shift, ids, logp)
    p_t = math.exp(lp_t)
    q_t = math.exp(lq_t)
    lm_t = _logaddexp(lp_t, lq_t) - _LN2
    kl += _bucket(p_t, lp_t, lq_t)
    if sampled and s_ids.shape[0] > 0:
        kl += p_t * _tail_estimate(r, shift, lq_t, lp_t, s_ids, s_logp)
    out[0] = kl
    out[1] = rk + _bucket(q_t, lq_t, lp_t)
    out[2] = 0.5 * (js + _bucket(p_t, lp_t, lm_t) + _bucket(q_t, lq_t, lm_t))
    out[3] = -t_logp
    if tgt >= 0:
        lqt = np.float64(r[tgt]) - shift
        out[4] = -lqt
        out[5] = math.exp(lqt) - math.exp(t_logp)
    else:
        out[4] = math.nan
        out[5] = math.nan
    n_kept = ids.shape[0]
    out[6] = math.exp(np.float64(logp[0])) if n_kept else math.nan
    out[7] = _overlap(ids, hi, min(5, n_kept, kq))
    out[8] = _overlap(ids, hi, min(10, n_kept, kq))
    out[9] = 1.0 if n_kept and ids[0] == hi[0] else 0.0
    return True


@njit(parallel=True, cache=CACHE)
def compare_rows(x: np.ndarray, targets: np.ndarray, offsets: np.ndarray, ids: np.ndarray,
                 logp: np.ndarray, log_tail: np.ndarray, target_logp: np.ndarray,
                 tail_offsets: np.ndarray, tail_ids: np.ndarray, tail_logp: np.ndarray,
                 sampled: bool, blocks: int, out: np.ndarray, bad: np.ndarray) -> None:
    """Comparison side, every row i of quant logits ``x`` (n, V) against compact row i (ids /
    logp between offsets[i] and offsets[i + 1], float64; tail samples likewise): out[i] gets
    (kld, rkld, jsd, nll_ref, nll_q, dp, ref_top1_prob, top5, top10, same_top1)."""
    n, vocab = x.shape
    for b in prange(blocks):
        mark = np.zeros(vocab, np.uint8)
        hv = np.empty(10, np.float64)
        hi = np.empty(10, np.int64)
        for i in range(b, n, blocks):
            a, e = offsets[i], offsets[i + 1]
            sa, se = tail_offsets[i], tail_offsets[i + 1]
            ok = _compare_row(x[i], targets[i], ids[a:e], logp[a:e], log_tail[i],
                              target_logp[i], tail_ids[sa:se], tail_logp[sa:se], sampled,
                              mark, hv, hi, out[i])
            bad[i] = not ok
