"""Rank correlation of a fidelity metric with a benchmark score across quants.

Statistics (over the quants where both values are present):

* ``rho``: Spearman's rank correlation (Pearson correlation of average ranks), equal to
  ``scipy.stats.spearmanr``; ``tau``: Kendall's tau-b, equal to ``scipy.stats.kendalltau``.
* p-values, two-sided, and ``p_method`` says which one was used:
  - ``"permutation-exact"`` (3 <= n <= 8): all n! permutations of the score against the
    metric are enumerated; p = share of permutations with |statistic| >= |observed|
    (statistics in integer arithmetic: ranks doubled and centred, so ties are exact).
  - ``"permutation-mc"`` (n = 9 or 10): the same test on 100,000 random permutations,
    p = (1 + #{|T*| >= |T|}) / (1 + 100,000); the permutations come from a generator
    seeded by the tie pattern of the data, so a result is reproducible on its own.
  - ``"t-approximation"`` (n > 10): rho's p from Student's t with n - 2 degrees of freedom
    (``scipy.stats.spearmanr``); tau's p from scipy's asymptotic normal approximation
    (``kendalltau(method="asymptotic")``).
* ``ci_low`` / ``ci_high``: seeded percentile bootstrap 95 % interval of rho, resampling
  quants with replacement (``n_boot`` resamples, see ``bootstrap.py``).
* Undefined statistics (n < 3, or a constant column) are None.

Direction convention: every fidelity metric in quantfid is "lower is better" except
``same_top1`` (higher is better); benchmark scores are higher-is-better. A useful
lower-is-better metric therefore has a NEGATIVE rho with score (``METRIC_DIRECTION``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats

from quantfid.analysis import bootstrap

EXACT_MAX_N = 8
PERMUTATION_MAX_N = 10
MC_PERMUTATIONS = 100_000

# +1: higher is better; -1: lower is better (a good metric correlates negatively with score).
METRIC_DIRECTION: dict[str, int] = {"same_top1": 1}


def direction(metric: str) -> int:
    """-1 for lower-is-better metrics (all but ``same_top1``), +1 for higher-is-better."""
    return METRIC_DIRECTION.get(metric, -1)


@dataclass(frozen=True)
class RankStats:
    """The statistics of one (metric, score) pair over ``n`` quants."""

    n: int
    rho: float | None
    p: float | None
    p_method: str | None
    ci_low: float | None
    ci_high: float | None
    tau: float | None
    tau_p: float | None


@dataclass(frozen=True)
class Correlation:
    """One correlation entry (the JSON shape of issue 5 section 8)."""

    metric: str
    score: str
    subset: str  # "full" | "silent"
    rule: str | None  # None | "band" | "lowest_k" | "paired"
    n: int
    rho: float | None
    p: float | None
    p_method: str | None
    ci_low: float | None
    ci_high: float | None
    tau: float | None
    tau_p: float | None
    corpus: str | None = None
    ctx: int | None = None

    @staticmethod
    def of(rs: RankStats, *, metric: str, score: str, subset: str, rule: str | None,
           corpus: str | None = None, ctx: int | None = None) -> Correlation:
        return Correlation(metric=metric, score=score, subset=subset, rule=rule, n=rs.n,
                           rho=rs.rho, p=rs.p, p_method=rs.p_method, ci_low=rs.ci_low,
                           ci_high=rs.ci_high, tau=rs.tau, tau_p=rs.tau_p, corpus=corpus, ctx=ctx)

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "score": self.score, "subset": self.subset,
                "rule": self.rule, "n": self.n, "rho": self.rho, "p": self.p,
                "p_method": self.p_method, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "tau": self.tau, "tau_p": self.tau_p, "corpus": self.corpus, "ctx": self.ctx}


def _centred2(r: np.ndarray) -> np.ndarray:
    """2 * average rank - (n + 1): integers, summing to 0."""
    return np.rint(2.0 * r - (r.size + 1)).astype(np.int64)


def _perms(n: int, rng: np.random.Generator | None) -> np.ndarray:
    if rng is None:
        return np.array(list(itertools.permutations(range(n))), dtype=np.int64)
    return np.argsort(rng.random((MC_PERMUTATIONS, n)), axis=1)


@lru_cache(maxsize=4096)
def _null(a_key: tuple[int, ...], b_key: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, str]:
    """Sorted |T| and |S| under permutation for centred doubled ranks a, b (a multiset each)."""
    n = len(a_key)
    a = np.array(a_key, dtype=np.int64)
    b = np.array(b_key, dtype=np.int64)
    if n <= EXACT_MAX_N:
        perms, method = _perms(n, None), "permutation-exact"
    else:
        seed = [n, *(int(v) + 2 * n for v in a_key), *(int(v) + 2 * n for v in b_key)]
        perms, method = _perms(n, np.random.default_rng(seed)), "permutation-mc"
    t = b[perms] @ a
    sx = np.sign(a[:, None] - a[None, :])
    sy = np.sign(b[:, None] - b[None, :])
    s = np.zeros(perms.shape[0], dtype=np.int64)
    for i, j in itertools.combinations(range(n), 2):
        if sx[i, j] != 0:
            s += sx[i, j] * sy[perms[:, i], perms[:, j]]
    return np.sort(np.abs(t)), np.sort(np.abs(s)), method


def _perm_p(null_sorted: np.ndarray, observed: int, method: str) -> float:
    count = null_sorted.size - np.searchsorted(null_sorted, abs(observed), side="left")
    if method == "permutation-exact":
        return float(count / null_sorted.size)
    return float((1 + count) / (1 + null_sorted.size))


def _tie_sums(v: np.ndarray) -> tuple[float, float, float, float]:
    """Sums over tie groups of t(t-1)/2, t(t-1)(2t+5), t(t-1)(t-2), t(t-1)."""
    _, t = np.unique(v, return_counts=True)
    t = t.astype(np.float64)
    return (float((t * (t - 1) / 2).sum()), float((t * (t - 1) * (2 * t + 5)).sum()),
            float((t * (t - 1) * (t - 2)).sum()), float((t * (t - 1)).sum()))


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Kendall's tau-b and its two-sided asymptotic-normal p-value (tie-corrected variance),
    as ``scipy.stats.kendalltau(x, y, method="asymptotic")``; O(n^2) vectorised."""
    n = x.size
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    s = float(np.triu(sx * sy, 1).sum())
    n0 = n * (n - 1) / 2.0
    tx, vx, wx, ux = _tie_sums(x)
    ty, vy, wy, uy = _tie_sums(y)
    tau = s / np.sqrt((n0 - tx) * (n0 - ty))
    var = ((n * (n - 1) * (2 * n + 5) - vx - vy) / 18.0
           + wx * wy / (9.0 * n * (n - 1) * (n - 2)) + ux * uy / (4.0 * n0))
    p = float(2.0 * stats.norm.sf(abs(s) / np.sqrt(var))) if var > 0 else 1.0
    return float(np.clip(tau, -1.0, 1.0)), p


def point_stats(x: np.ndarray, y: np.ndarray) -> RankStats:
    """rho, tau and their p-values (no CI) for complete vectors x, y."""
    n = int(x.size)
    none = RankStats(n, None, None, None, None, None, None, None)
    if n < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return none
    rx = bootstrap.average_ranks(x)
    ry = bootstrap.average_ranks(y)
    rho = float(np.corrcoef(rx, ry)[0, 1])
    tau, tau_p_asym = kendall_tau_b(x, y)
    if n <= PERMUTATION_MAX_N:
        a = _centred2(rx)
        b = _centred2(ry)
        null_t, null_s, method = _null(tuple(sorted(a.tolist())), tuple(sorted(b.tolist())))
        t0 = int(a @ b)
        sx = np.sign(a[:, None] - a[None, :])
        sy = np.sign(b[:, None] - b[None, :])
        s0 = int(np.triu(sx * sy, 1).sum())
        return RankStats(n, rho, _perm_p(null_t, t0, method), method, None, None, tau,
                         _perm_p(null_s, s0, method))
    if abs(rho) >= 1.0:
        p = 0.0
    else:
        t = rho * np.sqrt((n - 2) / (1.0 - rho * rho))
        p = float(2.0 * stats.t.sf(abs(t), n - 2))
    return RankStats(n, rho, p, "t-approximation", None, None, tau, tau_p_asym)


def correlate(x: np.ndarray, y: np.ndarray, *, n_boot: int,
              rng: np.random.Generator) -> RankStats:
    """Statistics of one pair over the entries where both x and y are finite."""
    return correlate_many(np.asarray(x, dtype=np.float64)[None, :], y, n_boot=n_boot, rng=rng)[0]


def correlate_many(xs: np.ndarray, y: np.ndarray, *, n_boot: int,
                   rng: np.random.Generator, member: np.ndarray | None = None,
                   cache: dict[int, np.ndarray] | None = None) -> list[RankStats]:
    """Statistics of every row of ``xs`` (V, Q) against ``y`` (Q,) over the ``member`` quants.

    Rows sharing the same set of complete quants share one bootstrap draw (a paired
    bootstrap across metrics); the draws are taken from ``rng`` in row order. With a
    ``cache`` (size n -> counts), every correlation over n quants within one analysis reuses
    the same draw of resample counts (each interval is still an ordinary bootstrap).
    """
    xs = np.asarray(xs, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    base = np.isfinite(y) if member is None else (np.isfinite(y) & member)
    out: list[RankStats | None] = [None] * xs.shape[0]
    groups: dict[bytes, list[int]] = {}
    masks: dict[bytes, np.ndarray] = {}
    for v in range(xs.shape[0]):
        m = base & np.isfinite(xs[v])
        groups.setdefault(m.tobytes(), []).append(v)
        masks[m.tobytes()] = m
    for key, rows in groups.items():
        m = masks[key]
        ys = y[m]
        n = int(m.sum())
        c = None
        if n >= 3 and n_boot > 0:
            c = cache.get(n) if cache is not None else None
            if c is None:
                c = bootstrap.counts_t(rng, n, n_boot)
                if cache is not None:
                    cache[n] = c
        prep = bootstrap.prepare_y(ys, c) if c is not None else None
        for v in rows:
            xv = xs[v][m]
            ps = point_stats(xv, ys)
            lo = hi = None
            if ps.rho is not None and c is not None:
                lo, hi = bootstrap.percentile_ci(bootstrap.spearman_resamples(xv, ys, c, prep))
            out[v] = RankStats(ps.n, ps.rho, ps.p, ps.p_method, lo, hi, ps.tau, ps.tau_p)
    return [o for o in out if o is not None]
