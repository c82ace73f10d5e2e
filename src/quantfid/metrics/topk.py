"""Fidelity from top-k: KL(P || Q) when the quant Q (or the reference P) sits behind a server.

A server returns, per position, its top K ids with log-probs (normalised over the whole
vocabulary), the next token's log-prob, and (SGLang) the log-probs of ids the caller chose.
The reference P is a compact row (:mod:`quantfid.store.compact`): its top-k ids (k adaptive),
the tail mass p_T, a sample of the tail and the next token's exact log-prob. Notation per
position: A = the reference's kept ids whose q the server returned (plus the next token t
when both sides know it), B = kept ids whose q is unknown, T = the reference's tail (mass
p_T). The server's K-th log-prob caps every id it did not return: q(b) <= q_K for b in B.
Q_U = 1 - Q(A) and P_U = P(B) + p_T are known exactly (log-probs are normalised).

    KL = sum_A p ln(p / q)  +  sum_B p ln(p / q)  +  sum_T p ln(p / q).

``kld_bound_low`` (holds for every Q consistent with the data, by the log-sum inequality):
the exact terms over A plus the minimum of the B and T terms over all q(b) <= q_K with
sum_B q + q_T = Q_U (the tail as one bucket; water-filling: q(b) = min(q_K, p(b) / lam),
q_T = p_T / lam, and q_T at least the mass the server returned outside the kept ids).

``kld_bound_high``: +inf wherever any P-mass has an unknown q (an id the server did not
return may have q as small as it likes, so no finite bound exists without an assumption);
where nothing is unknown (P_U = 0) it is the exact value.

``kld`` (the estimate): the log-ratio noise model ln q(v) = ln p(v) + c + e(v), e ~ N(0, s^2)
i.i.d. over ids, which holds well for quantization noise (measured on SmolLM2: the spread
of ln q - ln p grows only ~1.5x from the top-5 ids to the deep tail, Q8_0 to 3-bit RTN).
Per position, s^2 is fitted to ln q - ln p of the ids both sides know (A, the next token,
tail samples the server returned) together with the censored ones (kept ids and tail
samples it did not return: ln q - ln p < ln q_K - ln p), as a censored normal by EM
(Tobit), because the server's top-K selects what it returns by q; with fewer than 30 known
ids that fit is unstable and the plain sample variance (ddof 1; 0 with fewer than two) is
used. c solves the mass constraint E[Q(B)] + E[q_T] = Q_U with each B id's e truncated at
its cap. The unknown terms are replaced by their expectations: p(b) (-c - E[e | e below the
cap]) for b in B; for the tail, p_T ln(p_T / q_T) plus p_T times the mean over the tail
samples of r - 1 - ln r (the compact store's estimator), each sample's term exact where the
server returned its q and its expectation below the cap where not (-c p_T without samples).
With s^2 = 0 this is the lower bound; the estimate is never below the bound (clamped).
Where every q is known (SGLang asked for the kept ids and the tail samples, or K = V), no
model is used: the result equals ``CompactStore.metrics_against`` (exact when the reference
rows hold the whole vocabulary). A server that cannot name some of its top-K ids (shared
text keys) marks them with a NaN log-prob: they are unknown and uncapped. Measured error:
``benchmarks/bench_topk.py``, docs/servers.md.

Exact per position: same top-1, the reference's top-1 probability, NLL(ref); NLL(Q) and
dp = p_Q(t) - p_P(t) where the server returned the next token's log-prob (NaN otherwise);
top-5/top-10 overlaps when both sides returned at least that many ids (else None).
All arithmetic in float64; log-probs may arrive as float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.errors import MismatchError
from quantfid.metrics.topk_model import (
    ROUNDING,
    Rest,
    Samples,
    censored_var,
    plain_var,
    rest_bound,
    rest_model,
)
from quantfid.metrics.types import TokenMetrics
from quantfid.store.rows import CompactRows


@dataclass(frozen=True)
class TopKFidelity:
    """Per-position fidelity from top-K rows: ``metrics.kld`` is the estimate, with bounds.

    kld_bound_low / kld_bound_high: (n,) float64 (high is +inf where no finite bound exists).
    known_mass: (n,) the reference mass on ids whose q is known (A and the next token).
    sigma2: (n,) the log-ratio variance the estimate used.
    """

    metrics: TokenMetrics
    kld_bound_low: np.ndarray
    kld_bound_high: np.ndarray
    known_mass: np.ndarray
    sigma2: np.ndarray

    def __len__(self) -> int:
        return len(self.metrics)


@dataclass(frozen=True)
class MeanKld:
    """Mean KLD over n positions with bounds (low <= mean of the true KLD <= high)."""

    estimate: float
    low: float
    high: float
    n: int


def mean_kld(res: TopKFidelity) -> MeanKld:
    """Mean of the per-position estimate and of its bounds (means of bounds bound the mean)."""
    n = len(res)
    if n == 0:
        return MeanKld(float("nan"), float("nan"), float("nan"), 0)
    return MeanKld(float(np.mean(res.metrics.kld)), float(np.mean(res.kld_bound_low)),
                   float(np.mean(res.kld_bound_high)), n)


# ---- id lookup -------------------------------------------------------------------------
class _Known:
    """The (row, id) -> log q table of one chunk: top-K, next token and chosen ids."""

    def __init__(self, q: TopKRows, targets: np.ndarray, n: int, span: int) -> None:
        cols_i = [np.asarray(q.ids, np.int64)]
        cols_l = [np.asarray(q.logp, np.float64)]
        t_lq = np.asarray(q.target_logp, np.float64)
        cols_i.append(np.where(np.isnan(t_lq), -1, targets)[:, None])
        cols_l.append(t_lq[:, None])
        if q.chosen_ids is not None and q.chosen_logp is not None:
            cols_i.append(np.asarray(q.chosen_ids, np.int64))
            cols_l.append(np.asarray(q.chosen_logp, np.float64))
        ids = np.concatenate(cols_i, axis=1)
        lq = np.concatenate(cols_l, axis=1)
        ok = (ids >= 0) & ~np.isnan(lq)
        rows = np.broadcast_to(np.arange(n)[:, None], ids.shape)[ok]
        self.span = span
        keys = rows * self.span + ids[ok]
        order = np.argsort(keys, kind="stable")
        self.keys, first = np.unique(keys[order], return_index=True)
        self.lq = lq[ok][order][first]

    def get(self, rows: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, log q) for each (row, id); log q is NaN where not found."""
        ids = np.asarray(ids, np.int64)
        if self.keys.size == 0:
            return np.zeros(len(ids), bool), np.full(len(ids), np.nan)
        ok = (ids >= 0) & (ids < self.span)
        keys = rows * self.span + np.where(ok, ids, 0)
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        found = ok & (self.keys[pos] == keys)
        return found, np.where(found, self.lq[pos], np.nan)


def _in_rows(rows: np.ndarray, ids: np.ndarray, q_rows: np.ndarray, q_ids: np.ndarray,
             span: int) -> np.ndarray:
    """Whether each (q_rows, q_ids) pair occurs among the (rows, ids) pairs."""
    keys = np.sort(rows * span + ids)
    probe = q_rows * span + q_ids
    if keys.size == 0:
        return np.zeros(len(probe), bool)
    pos = np.minimum(np.searchsorted(keys, probe), len(keys) - 1)
    return keys[pos] == probe


# ---- the estimator -----------------------------------------------------------------------
def _check(ref: CompactRows, q: TopKRows, targets: np.ndarray) -> None:
    n = len(ref)
    if len(q) != n or targets.shape != (n,):
        raise MismatchError(f"top-k fidelity: {n} reference rows, {len(q)} quant rows, "
                            f"{targets.shape} targets")
    if n and int(np.min(ref.counts)) < 1:
        raise MismatchError("top-k fidelity: a reference row keeps no ids")
    if q.ids.shape != q.logp.shape or q.ids.ndim != 2 or q.ids.shape[1] < 1:
        raise MismatchError(f"top-k fidelity: quant ids {q.ids.shape} and log-probs "
                            f"{q.logp.shape} must be (n, K >= 1)")


@dataclass
class _Split:
    """One chunk split into the exact part and the unknown rest (see the module docstring)."""

    rows: np.ndarray      # (nnz,) row of each kept reference entry
    found: np.ndarray     # (nnz,) its q is known
    plq: np.ndarray       # (nnz,) p ln(p / q) where known, else 0
    exact: np.ndarray     # (n,) exact terms: A and the next token as a singleton
    q_a: np.ndarray       # (n,) Q(A)
    q_out: np.ndarray     # (n,) known Q mass outside the kept ids (direct sum)
    known_mass: np.ndarray
    lp_t: np.ndarray
    lq_t: np.ndarray
    rest: Rest
    s2: np.ndarray
    all_known: np.ndarray
    smp: Samples


def _span(ref: CompactRows, quant: TopKRows, t: np.ndarray) -> int:
    """One more than every id in play, so (row, id) pairs key as row * span + id."""
    parts = [np.asarray(ref.ids), np.asarray(ref.tail_ids), np.asarray(quant.ids), t]
    if quant.chosen_ids is not None:
        parts.append(np.asarray(quant.chosen_ids))
    return int(max(int(np.max(a, initial=0)) for a in parts)) + 2


def _split(ref: CompactRows, quant: TopKRows, t: np.ndarray) -> _Split:
    n = len(ref)
    known = _Known(quant, t, n, _span(ref, quant, t))
    rows = np.repeat(np.arange(n), ref.counts)
    ref_ids = np.asarray(ref.ids, np.int64)
    lp = np.asarray(ref.logp, np.float64)
    found, lq = known.get(rows, ref_ids)
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        plq = np.where(found, p * (lp - lq), 0.0)
    q_a = np.bincount(rows, np.where(found, np.exp(lq), 0.0), n)
    # the next token as one more exact id when it is in the tail and both sides know it
    t_in_s = _in_rows(rows, ref_ids, np.arange(n), t, known.span)
    t_found, lq_t = known.get(np.arange(n), t)
    lp_t = np.asarray(ref.target_logp, np.float64)
    # ... unless it holds most of a side's rest (p_T - p(t) would cancel: stores are float32)
    single = t_found & ~t_in_s & np.isfinite(lp_t) & np.isfinite(lq_t) \
        & (np.exp(lp_t) <= 0.5 * np.exp(np.asarray(ref.log_tail, np.float64))) \
        & (np.exp(lq_t) <= 0.5 * (1.0 - q_a))
    pt_s = np.where(single, np.exp(lp_t), 0.0)
    q_t_s = np.where(single, np.exp(lq_t), 0.0)
    with np.errstate(invalid="ignore"):
        exact = np.bincount(rows, plq, n) + np.where(single, pt_s * (lp_t - lq_t), 0.0)
    k_rows = known.keys // known.span
    outside = ~_in_rows(rows, ref_ids, k_rows, known.keys % known.span, known.span)
    q_out = np.bincount(k_rows[outside], np.exp(known.lq[outside]), n)
    b_rows, b_ids = rows[~found], ref_ids[~found]
    rest = Rest(b_rows, p[~found], _caps(quant, b_rows, b_ids, known.span),
                 np.maximum(np.exp(np.asarray(ref.log_tail, np.float64)) - pt_s, 0.0),
                 _remaining(q_a + q_t_s, q_out - q_t_s), q_out - q_t_s, n,
                 ROUNDING * (q_a + q_t_s) + 1e-15)
    obs_r, obs_d, all_known = _observed(ref, known, found, lp, lq, rows, single, lp_t, lq_t,
                                        n)
    srows, s_lp, s_lq, s_found = _samples(ref, known)
    s_ids = np.asarray(ref.tail_ids, np.int64)
    real = s_ids >= 0
    smp = Samples(srows[real], s_lp[real], s_lq[real], s_found[real],
                   _caps(quant, srows[real], s_ids[real], known.span),
                   np.bincount(srows[real], minlength=n))
    s2 = plain_var(obs_r, obs_d, n)[0]
    unk = ~smp.found
    fitted = censored_var(obs_r, obs_d, np.concatenate([rest.rows, smp.rows[unk]]),
                           np.concatenate([rest.log_cap - np.log(rest.p),
                                           smp.log_cap[unk] - smp.lp[unk]]), n)
    s2 = np.where(np.isnan(fitted), s2, fitted)
    return _Split(rows, found, plq, exact, q_a, q_out,
                  np.bincount(rows, np.where(found, p, 0.0), n) + pt_s, lp_t, lq_t, rest, s2,
                  all_known, smp)


def _remaining(q_known: np.ndarray, q_out: np.ndarray) -> np.ndarray:
    """1 - q_known, or the direct sum q_out of what the server returned there when that is
    all of it (no cancellation error when the remainder is tiny)."""
    rem = np.maximum(1.0 - q_known, 0.0)
    return np.where((q_out > 0) & (q_out >= rem - 1e-15), q_out, rem)  # 1e-15: rounding


def topk_fidelity(ref: CompactRows, quant: TopKRows, targets: np.ndarray) -> TopKFidelity:
    """Per-position fidelity of a quant's top-K rows against the reference's compact rows.

    targets: (n,) int64 next-token ids. See the module docstring for the definitions.
    """
    t = np.asarray(targets, np.int64)
    _check(ref, quant, t)
    n = len(ref)
    sp = _split(ref, quant, t)
    low = sp.exact + rest_bound(sp.rest)
    est = np.maximum(sp.exact + rest_model(sp.rest, sp.s2, sp.smp), low)
    if sp.all_known.any():  # every q known: the compact store's own estimate, no model
        q_tail = _remaining(sp.q_a, sp.q_out)
        sampled = np.bincount(sp.rows, sp.plq, n) + _tail_sampled(ref, quant, t, q_tail)
        est = np.where(sp.all_known, np.maximum(sampled, low), est)
    none_unknown = (np.bincount(sp.rest.rows, minlength=n) == 0) & (sp.rest.p_tail == 0)
    high = np.where(none_unknown, est, np.inf)
    tm = _token_metrics(ref, quant, est, sp.lq_t, sp.lp_t)
    return TopKFidelity(metrics=tm, kld_bound_low=low, kld_bound_high=high,
                        known_mass=sp.known_mass, sigma2=sp.s2)


def _caps(q: TopKRows, rows: np.ndarray, ids: np.ndarray, span: int) -> np.ndarray:
    """ln of the cap on each unknown id's q: the smallest log-prob among the server's returned
    top-K ids of its row, except ids the server marked as among its top K with an unknown
    log-prob (NaN, e.g. text keys several ids share), which have no cap (0 = ln 1)."""
    q_ids = np.asarray(q.ids, np.int64)
    q_lp = np.asarray(q.logp, np.float64)
    valid = (q_ids >= 0) & ~np.isnan(q_lp)
    cap = np.where(valid, q_lp, np.inf).min(axis=1)
    cap = np.where(np.isfinite(cap), cap, 0.0)[rows]
    marked = (q_ids >= 0) & np.isnan(q_lp)
    if marked.any():
        m_rows = np.broadcast_to(np.arange(len(q_ids))[:, None], q_ids.shape)[marked]
        cap = np.where(_in_rows(m_rows, q_ids[marked], rows, ids, span), 0.0, cap)
    return cap


def _samples(ref: CompactRows, known: _Known) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                       np.ndarray]:
    """Tail samples: (row, ln p, ln q (NaN unknown), found) per sample."""
    srows = np.repeat(np.arange(len(ref)), ref.tail_counts)
    s_ids = np.asarray(ref.tail_ids, np.int64)
    found, lq = known.get(srows, s_ids)
    found &= s_ids >= 0
    return srows, np.asarray(ref.tail_logp, np.float64), lq, found


def _observed(ref: CompactRows, known: _Known, found: np.ndarray, lp: np.ndarray,
              lq: np.ndarray, rows: np.ndarray, single: np.ndarray, lp_t: np.ndarray,
              lq_t: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, ln q - ln p) of every id both sides know (A, tail samples the server returned,
    the next token as a singleton), and per row whether every q the estimate needs is known
    (no B entry, every tail sample known)."""
    srows, s_lp, s_lq, s_found = _samples(ref, known)
    ok = found & np.isfinite(lq)
    s_ok = s_found & np.isfinite(s_lq) & np.isfinite(s_lp)
    t_ok = single & np.isfinite(lq_t)
    r_all = np.concatenate([rows[ok], srows[s_ok], np.arange(n)[t_ok]])
    d = np.concatenate([lq[ok] - lp[ok], s_lq[s_ok] - s_lp[s_ok], (lq_t - lp_t)[t_ok]])
    no_b = np.bincount(rows[~found], minlength=n) == 0
    real = np.asarray(ref.tail_ids, np.int64) >= 0
    unknown_s = np.bincount(srows[~s_found & real], minlength=n) > 0
    return r_all, d, no_b & ~unknown_s


def _tail_sampled(ref: CompactRows, quant: TopKRows, t: np.ndarray, q_t: np.ndarray
                  ) -> np.ndarray:
    """Tail part where every q is known, as the compact store computes it: the bucket
    p_T ln(p_T / q_T) plus p_T times the sample mean of r - 1 - ln r, with
    ln r = ln(q(v) / q_T) - ln(p(v) / p_T) for the sampled tail ids v."""
    n = len(ref)
    p_t = np.exp(np.asarray(ref.log_tail, np.float64))
    srows, s_lp, s_lq, s_found = _samples(ref, _Known(quant, t, n, _span(ref, quant, t)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ln_r = (s_lq - np.log(q_t)[srows]) - (s_lp - np.log(p_t)[srows])
        term = np.where(s_found, np.expm1(ln_r) - ln_r, 0.0)
        cnt = np.asarray(ref.tail_counts, np.float64)
        within = np.where(cnt > 0, np.bincount(srows, term, n) / np.maximum(cnt, 1.0), 0.0)
        bucket = np.where(p_t > 0, p_t * (np.log(p_t) - np.log(np.maximum(q_t, 1e-300))), 0.0)
    return bucket + p_t * within


def _top_ids(q: TopKRows) -> np.ndarray:
    """(n, K) the quant's returned ids by decreasing log-prob (-1 padding last)."""
    lq = np.where(np.asarray(q.ids) >= 0, np.asarray(q.logp, np.float64), -np.inf)
    order = np.argsort(-lq, axis=1, kind="stable")
    return np.take_along_axis(np.asarray(q.ids, np.int64), order, axis=1)


def _overlap(ref: CompactRows, q_top: np.ndarray, k: int) -> np.ndarray | None:
    """|top-k(P) & top-k(Q)| / k, or None when a row has fewer than k ids on either side."""
    if len(ref) == 0 or int(np.min(ref.counts)) < k or q_top.shape[1] < k \
            or bool((q_top[:, :k] < 0).any()):
        return None
    r_top = np.asarray(ref.ids, np.int64)[ref.offsets[:-1, None] + np.arange(k)[None, :]]
    inter = (r_top[:, :, None] == q_top[:, None, :k]).any(axis=2).sum(axis=1)
    return inter / k


def _token_metrics(ref: CompactRows, q: TopKRows, kld: np.ndarray, lq_t: np.ndarray,
                   lp_t: np.ndarray) -> TokenMetrics:
    q_top = _top_ids(q)
    first = ref.offsets[:-1]
    ref_top = np.asarray(ref.ids, np.int64)[first]
    return TokenMetrics(kld=kld, same_top1=ref_top == q_top[:, 0],
                        ref_top1_prob=np.exp(np.asarray(ref.logp, np.float64)[first]),
                        nll_ref=-lp_t, nll_q=-lq_t, dp=np.exp(lq_t) - np.exp(lp_t),
                        top5_overlap=_overlap(ref, q_top, 5),
                        top10_overlap=_overlap(ref, q_top, 10))


# ---- the naive estimator and the reverse case ----------------------------------------------
def naive_topk_kld(ref: TopKRows, quant: TopKRows, vocab_size: int) -> np.ndarray:
    """The obvious estimator a new user writes (the baseline of ``bench_topk``): per
    position, the union U of the reference's and the quant's top-K ids; an id one side did
    not return gets that side's remaining mass spread evenly over the V - K ids it did not
    return; KL over U plus one bucket per side for everything else."""
    n = len(ref)
    out = np.empty(n, np.float64)
    for i in range(n):
        ids_p = np.asarray(ref.ids[i], np.int64)
        ids_q = np.asarray(quant.ids[i], np.int64)
        lp_r, lq_r = np.asarray(ref.logp[i], np.float64), np.asarray(quant.logp[i], np.float64)
        ids_p, lp_r = ids_p[ids_p >= 0], lp_r[ids_p >= 0]
        ids_q, lq_r = ids_q[ids_q >= 0], lq_r[ids_q >= 0]
        u = np.union1d(ids_p, ids_q)
        pu = _spread(u, ids_p, np.exp(lp_r), vocab_size)
        qu = _spread(u, ids_q, np.exp(lq_r), vocab_size)
        rest_p, rest_q = max(1.0 - pu.sum(), 0.0), max(1.0 - qu.sum(), 1e-300)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pu > 0, pu * np.log(pu / qu), 0.0)
        out[i] = terms.sum() + (rest_p * np.log(rest_p / rest_q) if rest_p > 0 else 0.0)
    return out


def _spread(u: np.ndarray, ids: np.ndarray, probs: np.ndarray, vocab_size: int) -> np.ndarray:
    """probs of the ids ``u`` on one side: returned ones as given, others an even share."""
    vals = np.full(len(u), max(1.0 - probs.sum(), 0.0) / max(vocab_size - len(ids), 1))
    if len(ids):
        order = np.argsort(ids)
        pos = np.minimum(np.searchsorted(ids[order], u), len(ids) - 1)
        hit = ids[order][pos] == u
        vals[hit] = probs[order][pos[hit]]
    return vals


def compact_rows_from_topk(rows: TopKRows) -> CompactRows:
    """Compact rows of a reference behind a server: its returned top-K per position (sorted
    by decreasing log-prob, ties by id), the tail mass 1 - sum top-K (as log; -inf when
    nothing is left, also when rounding makes the sum reach 1), the next token's log-prob as
    returned (NaN unknown), no tail samples. Returned chosen ids are not kept (they are not
    a top-k)."""
    ids = np.asarray(rows.ids, np.int64)
    lp = np.asarray(rows.logp, np.float64)
    valid = ids >= 0
    key = np.where(valid, -lp, np.inf)
    order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), key), axis=-1)
    ids = np.take_along_axis(ids, order, axis=1)
    lp = np.take_along_axis(lp, order, axis=1)
    valid = np.take_along_axis(valid, order, axis=1)
    counts = valid.sum(axis=1).astype(np.int32)
    mass = np.where(valid, np.exp(lp), 0.0).sum(axis=1)
    with np.errstate(divide="ignore"):
        log_tail = np.where(mass < 1.0, np.log1p(-np.minimum(mass, 1.0)), -np.inf)
    n = len(counts)
    return CompactRows(counts=counts, ids=ids[valid], logp=lp[valid], log_tail=log_tail,
                       target_logp=np.asarray(rows.target_logp, np.float64),
                       tail_counts=np.zeros(n, np.int32), tail_ids=np.zeros(0, np.int64),
                       tail_logp=np.zeros(0, np.float64))
