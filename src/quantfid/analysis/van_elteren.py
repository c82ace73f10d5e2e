"""Van Elteren's stratified rank-sum test (van Elteren 1960; Lehmann, *Nonparametrics*, 3.3).

Two samples (here: per-prompt KLD on failed vs passed prompts) observed in several strata
(benchmarks). In stratum b with n_b = m_b + k_b values (m_b in the first sample), W_b is
the sum of the first sample's mid-ranks within the stratum, with

    E[W_b] = m_b (n_b + 1) / 2,
    Var[W_b] = m_b k_b / 12 * ((n_b + 1) - sum_t (t^3 - t) / (n_b (n_b - 1)))

(t: the sizes of tie groups). The statistic T = sum_b (W_b - E[W_b]) / (n_b + 1) weights
each stratum by 1 / (n_b + 1) (locally most powerful for a common shift); z = T / sqrt(Var T),
Var T = sum_b Var[W_b] / (n_b + 1)^2, and the p-value is two-sided normal, 2 (1 - Phi(|z|)),
without continuity correction. With one stratum it is the Mann-Whitney test's normal
approximation (``scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=False)``).
Strata where either sample is empty are skipped.

``mann_whitney(a, b)``: the two-sided Mann-Whitney test as ``scipy.stats.mannwhitneyu``
(method "auto"): U1 = R1 - m (m + 1) / 2 from mid-ranks; when both samples have more than 8
values or there are ties, the normal approximation with tie correction and continuity
correction, p = 2 Phi(-(max(U1, U2) - m k / 2 - 1/2) / sd) clipped to 1 (computed here, it
is the hot loop of failure prediction); otherwise scipy's exact distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mann_whitney(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(U of the first sample, two-sided p), equal to ``scipy.stats.mannwhitneyu``."""
    m, k = a.size, b.size
    n = m + k
    r = stats.rankdata(np.concatenate([a, b]))
    u1 = float(r[:m].sum()) - m * (m + 1) / 2.0
    _, tie = np.unique(r, return_counts=True)
    if (m > 8 and k > 8) or (tie > 1).any():
        u = max(u1, m * k - u1)
        sd = np.sqrt(m * k / 12.0 * ((n + 1) - float((tie ** 3 - tie).sum()) / (n * (n - 1))))
        p = 2.0 * float(stats.norm.sf((u - m * k / 2.0 - 0.5) / sd)) if sd > 0 else 1.0
        return u1, min(1.0, p)
    res = stats.mannwhitneyu(a, b, alternative="two-sided", method="exact")
    return float(res.statistic), float(res.pvalue)


@dataclass(frozen=True)
class VanElteren:
    statistic: float | None  # T
    z: float | None
    p: float | None
    n_strata: int


def van_elteren(first: Sequence[np.ndarray], second: Sequence[np.ndarray]) -> VanElteren:
    """The test of ``first[b]`` vs ``second[b]`` over strata b (two-sided)."""
    t = var = 0.0
    used = 0
    for a, b in zip(first, second, strict=True):
        m, k = a.size, b.size
        if m == 0 or k == 0:
            continue
        n = m + k
        r = stats.rankdata(np.concatenate([a, b]))
        w = float(r[:m].sum())
        _, tie = np.unique(r, return_counts=True)
        corr = float((tie ** 3 - tie).sum()) / (n * (n - 1)) if n > 1 else 0.0
        t += (w - m * (n + 1) / 2.0) / (n + 1)
        var += m * k / 12.0 * ((n + 1) - corr) / (n + 1) ** 2
        used += 1
    if used == 0:
        return VanElteren(None, None, None, 0)
    if var <= 0:
        return VanElteren(t, None, None, used)
    z = t / np.sqrt(var)
    return VanElteren(t, float(z), float(2.0 * stats.norm.sf(abs(z))), used)
