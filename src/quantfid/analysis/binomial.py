"""Binomial tests and intervals, vectorised: exact McNemar, sign test vs 50 %, CIs.

* ``sign_test_p(k, n)``: two-sided exact binomial test of ``k`` successes in ``n`` trials
  against p = 0.5, ``min(1, 2 * min(P[K <= k], P[K >= k]))``. For p = 0.5 this equals
  ``scipy.stats.binomtest(k, n, 0.5).pvalue`` (the null is symmetric). n = 0 gives p = 1.
* The exact McNemar test of a quant against the reference is the sign test on the
  discordant prompts: ``k`` = gains, ``n`` = gains + losses.
* ``clopper_pearson(k, n)``: the exact (Clopper-Pearson) 95 % interval, as
  ``binomtest(...).proportion_ci(method="exact")``; n = 0 gives (0, 1).
* ``wilson(k, n)``: the Wilson score 95 % interval (used for accuracies).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def sign_test_p(k: np.ndarray | int, n: np.ndarray | int) -> np.ndarray:
    """Exact two-sided binomial p-value of k successes of n against 1/2 (elementwise)."""
    k_arr = np.asarray(k, dtype=np.int64)
    n_arr = np.asarray(n, dtype=np.int64)
    lo = stats.binom.cdf(k_arr, n_arr, 0.5)
    hi = stats.binom.sf(k_arr - 1, n_arr, 0.5)
    p = np.minimum(1.0, 2.0 * np.minimum(lo, hi))
    return np.where(n_arr == 0, 1.0, p)


def clopper_pearson(k: np.ndarray | int, n: np.ndarray | int,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial interval for k of n (elementwise); (0, 1) where n == 0."""
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    a = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k_arr > 0, stats.beta.ppf(a, k_arr, n_arr - k_arr + 1), 0.0)
        hi = np.where(k_arr < n_arr, stats.beta.ppf(1 - a, k_arr + 1, n_arr - k_arr), 1.0)
    lo = np.where(n_arr == 0, 0.0, lo)
    hi = np.where(n_arr == 0, 1.0, hi)
    return lo, hi


def wilson(k: np.ndarray | int, n: np.ndarray | int,
           level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion k / n (elementwise); (0, 1) where n == 0."""
    k_arr = np.asarray(k, dtype=np.float64)
    n_arr = np.asarray(n, dtype=np.float64)
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k_arr / n_arr
        den = 1.0 + z * z / n_arr
        centre = (p + z * z / (2 * n_arr)) / den
        half = z * np.sqrt(p * (1 - p) / n_arr + z * z / (4 * n_arr * n_arr)) / den
    lo = np.where(n_arr == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    hi = np.where(n_arr == 0, 1.0, np.clip(centre + half, 0.0, 1.0))
    return lo, hi
