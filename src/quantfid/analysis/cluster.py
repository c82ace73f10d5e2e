"""Cluster bootstrap over prompts for pooled proportions of (pair, prompt) decisions.

Pooling the router's decisions over pairs of quants counts one prompt many times (every
pair that disagrees on it decides on it), so the decisions are not independent and a
binomial interval on the pooled count is too narrow. Here the prompt is the unit: with
``c_p`` correct and ``d_p`` decided decisions on prompt p (summed over pairs), the pooled
accuracy is theta = sum c / sum d, and a resample draws prompts with replacement *within
each stratum* (benchmark; benchmark sizes are fixed by design), keeping every pair's
decisions on each drawn prompt.

The interval is the studentized (bootstrap-t) interval, whose coverage is closer to the
nominal level than the percentile interval's for this ratio (checked by simulation in
``tests/analysis/test_router_coverage.py``: 2,000 cohorts, see ``docs/statistics.md``):

* se(theta): the linearization (delta-method) standard error of a ratio in a stratified
  cluster sample, with r_p = c_p - theta d_p:
  se^2 = sum_s n_s / (n_s - 1) sum_{p in s} (r_p - mean_s r)^2 / (sum d)^2
  (a stratum of one prompt contributes 0);
* each resample b gives theta*_b and se*_b (the same formula on the resample, from its
  count-weighted sums of c, d, c^2, c d, d^2 per stratum) and t*_b = (theta*_b - theta) / se*_b;
* CI: [theta - q_0.975 se, theta - q_0.025 se] (q: quantiles of the finite t*), clipped to
  [0, 1];
* p (two-sided, against 0.5): t0 = (theta - 0.5) / se,
  p = min(1, 2 min(#{t* >= t0} + 1, #{t* <= t0} + 1) / (B + 1)), so p < 0.05 exactly when
  0.5 is outside the 95 % interval (up to the +1).
* When se = 0 (e.g. every decision correct) the bootstrap is degenerate: the exact
  Clopper-Pearson interval and binomial test are used on the prompts as units, round(theta m)
  of the m prompts with a decision (``"exact-on-prompts"``); when more than half of the
  resamples have an undefined t*, the percentile interval of theta* and its percentile p
  (``"cluster-bootstrap-percentile"``). ``method`` says which.

Draws: per block of up to 1,000 resamples, for each stratum in ascending order,
``rng.integers(0, n_s, (block, n_s))``; every target (rows of ``correct``) shares them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantfid.analysis import bootstrap
from quantfid.analysis.binomial import clopper_pearson, sign_test_p

BLOCK = 1000
STUDENTIZED = "cluster-bootstrap-t"
PERCENTILE = "cluster-bootstrap-percentile"
EXACT = "exact-on-prompts"


@dataclass(frozen=True)
class ClusterCI:
    ci_low: float | None
    ci_high: float | None
    p: float | None
    se: float | None
    method: str


def _stratum_var(s: np.ndarray, theta: np.ndarray, n: int) -> np.ndarray:
    """n / (n - 1) sum (r - mean r)^2 from sums s = (c, d, c^2, cd, d^2) (..., 5)."""
    if n < 2:
        return np.zeros(np.shape(theta))
    sr = s[..., 0] - theta * s[..., 1]
    srr = s[..., 2] - 2 * theta * s[..., 3] + theta * theta * s[..., 4]
    return n / (n - 1.0) * np.maximum(srr - sr * sr / n, 0.0)


def _moments(correct: np.ndarray, decided: np.ndarray) -> np.ndarray:
    c = correct.astype(np.float64)
    d = decided.astype(np.float64)
    return np.stack([c, d, c * c, c * d, d * d], axis=-1)  # (T, P, 5)


def resample_sums(moments: np.ndarray, strata: np.ndarray, n_boot: int,
                  rng: np.random.Generator) -> list[np.ndarray]:
    """Per stratum, (n_boot, T, 5) resampled sums of ``moments`` (T, P, 5)."""
    levels = np.unique(strata)
    cols = [np.flatnonzero(strata == s) for s in levels]
    t = moments.shape[0]
    out = [np.zeros((n_boot, t, 5)) for _ in cols]
    flat = [moments[:, c, :].transpose(1, 0, 2).reshape(c.size, t * 5) for c in cols]
    for start in range(0, n_boot, BLOCK):
        b = min(BLOCK, n_boot - start)
        for k, c in enumerate(cols):
            cnt = bootstrap.counts(rng, c.size, b)  # (b, n_s)
            out[k][start:start + b] = (cnt @ flat[k]).reshape(b, t, 5)
    return out


def _theta_se(sums: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    tot = np.sum(sums, axis=0)  # (..., 5)
    with np.errstate(invalid="ignore", divide="ignore"):
        theta = tot[..., 0] / tot[..., 1]
        var = np.sum([_stratum_var(s, theta, n) for s, n in zip(sums, sizes, strict=True)], axis=0)
        se = np.sqrt(var) / tot[..., 1]
    return theta, se


def _equal_tail_p(values: np.ndarray, at: float) -> float:
    lo = int((values <= at).sum()) + 1
    hi = int((values >= at).sum()) + 1
    return float(min(1.0, 2.0 * min(lo, hi) / (values.size + 1)))


def percentile_p(boot: np.ndarray, null: float = 0.5) -> float | None:
    """Two-sided percentile-bootstrap p-value of ``null``: the smallest alpha at which the
    (1 - alpha) percentile interval of the finite resamples excludes it."""
    v = boot[np.isfinite(boot)]
    if v.size == 0 or v.size * 2 < boot.size:
        return None
    return _equal_tail_p(v, null)


def cluster_cis(correct: np.ndarray, decided: np.ndarray, strata: np.ndarray, n_boot: int,
                rng: np.random.Generator, null: float = 0.5) -> list[ClusterCI]:
    """Intervals and p-values of T pooled accuracies, ``correct``/``decided`` (T, P), one draw."""
    levels = np.unique(strata)
    sizes = [int((strata == s).sum()) for s in levels]
    m = _moments(np.atleast_2d(correct), np.atleast_2d(decided))  # (T, P, 5)
    point = [m[:, strata == s, :].sum(axis=1) for s in levels]  # (T, 5) each
    theta, se = _theta_se(point, sizes)  # (T,)
    b_theta, b_se = _theta_se(resample_sums(m, strata, n_boot, rng), sizes)  # (B, T)
    out = []
    for t in range(m.shape[0]):
        if not np.isfinite(theta[t]):
            out.append(ClusterCI(None, None, None, None, STUDENTIZED))
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            tstar = (b_theta[:, t] - theta[t]) / b_se[:, t]
        ok = tstar[np.isfinite(tstar)]
        if se[t] > 0 and ok.size * 2 >= tstar.size:
            q_lo, q_hi = np.quantile(ok, [0.025, 0.975])
            lo = float(np.clip(theta[t] - q_hi * se[t], 0.0, 1.0))
            hi = float(np.clip(theta[t] - q_lo * se[t], 0.0, 1.0))
            p = _equal_tail_p(ok, (theta[t] - null) / se[t])
            out.append(ClusterCI(lo, hi, p, float(se[t]), STUDENTIZED))
        elif se[t] == 0:
            units = int((m[t, :, 1] > 0).sum())
            k = round(float(theta[t]) * units)
            lo_c, hi_c = clopper_pearson(k, units)
            out.append(ClusterCI(float(lo_c), float(hi_c), float(sign_test_p(k, units)), 0.0,
                                 EXACT))
        else:
            lo_, hi_ = bootstrap.percentile_ci(b_theta[:, t])
            out.append(ClusterCI(lo_, hi_, percentile_p(b_theta[:, t], null), float(se[t]),
                                 PERCENTILE))
    return out


def cluster_ci(correct: np.ndarray, decided: np.ndarray, strata: np.ndarray, n_boot: int,
               rng: np.random.Generator) -> ClusterCI:
    """The interval of one pooled accuracy; ``correct``, ``decided``, ``strata`` (P,)."""
    return cluster_cis(correct[None, :], decided[None, :], strata, n_boot, rng)[0]
