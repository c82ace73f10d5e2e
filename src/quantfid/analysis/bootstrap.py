"""Vectorised bootstrap resampling as count matrices (no Python loop per resample).

A resample of n items drawn with replacement is stored as its counts: row b of
``counts(rng, n, B)`` says how often each original item appears in resample b (rows sum
to n); ``counts_t`` is the same draw item-major, (n, B) float32, which the rank code uses
(cumulative sums down items are then fast vector adds). Statistics that are sums over items (means, weighted ranks) then become matrix
products or row-wise operations on a (B, n) array. The draws are
``rng.integers(0, n, size=(B, n))``, i.e. the same index matrix a per-resample loop would use.

Percentile intervals: the 2.5 and 97.5 percentiles of the finite resample statistics
(resamples where the statistic is undefined, e.g. a constant resample, are dropped; if
more than half are undefined the interval is None).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def indices(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """The (n_boot, n) matrix of resample indices."""
    return rng.integers(0, n, size=(n_boot, n))


def counts_from_indices(idx: np.ndarray, n: int) -> np.ndarray:
    """Counts (B, n) float64 of each item in each row of an index matrix."""
    b = idx.shape[0]
    flat = (idx + (np.arange(b, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def counts(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """Counts (n_boot, n) of a fresh bootstrap draw."""
    return counts_from_indices(indices(rng, n, n_boot), n)


def counts_t(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """Counts of a fresh draw in item-major layout: (n, n_boot) float32 (exact small integers)."""
    return np.ascontiguousarray(counts(rng, n, n_boot).T, dtype=np.float32)


def _cumsum_rows(a: np.ndarray) -> np.ndarray:
    """Cumulative sum down axis 0, one vector add per row (much faster than np.cumsum here)."""
    out = np.empty_like(a)
    out[0] = a[0]
    for i in range(1, a.shape[0]):
        np.add(out[i - 1], a[i], out=out[i])
    return out


def _sorted_ranks(xs: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """Average ranks (n, B) of the items of sorted ``xs`` inside each resample (counts ``cs``)."""
    cum = _cumsum_rows(cs)
    n = xs.size
    new = np.ones(n, dtype=bool)
    new[1:] = xs[1:] != xs[:-1]
    if new.all():
        return cum - (cs - 1.0) * 0.5
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n] - 1
    before = np.zeros((starts.size, cs.shape[1]), dtype=cs.dtype)
    before[1:] = cum[ends[:-1]]
    total = cum[ends] - before
    gid = np.cumsum(new) - 1
    return before[gid] + (total[gid] + 1.0) * 0.5


def resample_ranks(x: np.ndarray, ct: np.ndarray) -> np.ndarray:
    """Average (tie-aware) ranks every item would have inside each resample.

    ``x`` (n,), ``ct`` (n, B) counts (item-major). Returns (n, B): entry (j, b) is the
    average rank of item j in resample b (1-based, ties averaged as
    ``scipy.stats.rankdata``); items absent from a resample get the rank they would share,
    which carries zero weight.
    """
    order = np.argsort(x, kind="stable")
    out = np.empty_like(ct)
    out[order] = _sorted_ranks(x[order], ct[order])
    return out


def _acc(n: int) -> type[np.floating]:
    """Accumulator: float32 is exact while |sums| of quarter-integers stay < 2^22 (n <= 200)."""
    return np.float32 if n <= 200 else np.float64


def prepare_y(y: np.ndarray, ct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred resample ranks of y (n, B) and their weighted sum of squares (B,)."""
    dy = resample_ranks(y, ct) - (y.size + 1) * 0.5
    return dy, np.einsum("ij,ij->j", ct * dy, dy, dtype=_acc(y.size)).astype(np.float64)


def spearman_resamples(x: np.ndarray, y: np.ndarray, ct: np.ndarray,
                       prep: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Spearman rho of (x[idx_b], y[idx_b]) for every resample b given as counts ``ct`` (n, B).

    Equal to ``scipy.stats.spearmanr`` on the materialised resample (NaN where a resample is
    constant in x or y). In every resample the count-weighted mean of average ranks is
    exactly (n + 1) / 2, so centring needs no per-resample mean; ranks are half-integers.
    ``prep`` may pass ``prepare_y(y, ct)`` when many x share one y.
    """
    dy, syy = prepare_y(y, ct) if prep is None else prep
    order = np.argsort(x, kind="stable")
    cs = ct[order]
    dx = _sorted_ranks(x[order], cs) - (x.size + 1) * 0.5
    cdx = cs * dx
    acc = _acc(x.size)
    sxy = np.einsum("ij,ij->j", cdx, dy[order], dtype=acc).astype(np.float64)
    sxx = np.einsum("ij,ij->j", cdx, dx, dtype=acc).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sxy / np.sqrt(sxx * syy)
    r[(sxx <= 0) | (syy <= 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of the finite entries; None when more than half are undefined."""
    v = values[np.isfinite(values)]
    if v.size == 0 or v.size * 2 < values.size:
        return None, None
    a = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(v, [a, 100.0 - a])
    return float(lo), float(hi)


def average_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis."""
    return np.asarray(rankdata(x, axis=-1), dtype=np.float64)


def percentile_cis(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """``percentile_ci`` of every column of ``values`` (B, ...) at once: (lo, hi) arrays of the
    trailing shape, NaN where more than half of a column's resamples are undefined (equal to
    ``np.percentile``'s linear interpolation over the finite entries)."""
    srt = np.sort(values, axis=0)  # NaN sorts last
    k = np.isfinite(values).sum(axis=0)
    a = (1.0 - level) / 2.0
    out = []
    for q in (a, 1.0 - a):
        pos = q * np.maximum(k - 1, 0)
        lo_i = np.floor(pos).astype(np.int64)
        hi_i = np.minimum(lo_i + 1, np.maximum(k - 1, 0))
        frac = pos - lo_i
        v_lo = np.take_along_axis(srt, lo_i[None, ...], axis=0)[0]
        v_hi = np.take_along_axis(srt, hi_i[None, ...], axis=0)[0]
        out.append(np.where((k > 0) & (k * 2 >= values.shape[0]), v_lo + frac * (v_hi - v_lo),
                            np.nan))
    return out[0], out[1]
