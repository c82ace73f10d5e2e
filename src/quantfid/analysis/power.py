"""Minimum detectable effect (MDE) of a benchmark at 80 % power, two-sided 5 %.

Two figures per benchmark, both as an absolute accuracy difference (fraction of prompts):

* ``mde_paired`` (the design quantfid tests with): the exact McNemar test of a quant against
  the reference. Given N prompts and the observed discordance rate d (median over the
  cohort's quants of (G + L) / N), the number of discordant prompts is fixed at
  D = round(d N) (conditioning on D); the quant's gains are then Binomial(D, f). The power
  at f is P(exact two-sided sign test rejects at ``alpha``); the MDE is d (2 f* - 1) for the
  smallest f* >= 1/2 (on a grid of step 1e-4) with power >= 0.8. None when D = 0 or even
  f = 1 gives less power (the benchmark cannot see any drop at that discordance).
* ``mde_unpaired``: the textbook two-proportion normal approximation, treating the two
  models as independent samples of N prompts at the reference accuracy p:
  (z_{1 - alpha/2} + z_{power}) sqrt(2 p (1 - p) / N). Shown for comparison: it ignores the
  pairing, so it is larger than the paired figure when the models agree on most prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from quantfid.analysis.binomial import sign_test_p

METHOD = ("paired: exact McNemar (sign test on D = round(d N) discordant prompts, d the median "
          "discordance rate over quants), power 0.8, two-sided alpha 0.05; unpaired: "
          "two-proportion normal approximation at the reference accuracy")


@dataclass(frozen=True)
class Mde:
    benchmark: str
    n: int
    reference_accuracy: float | None
    discordance_rate: float | None
    discordant: int | None
    mde_paired: float | None
    mde_unpaired: float | None
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "n": self.n,
                "reference_accuracy": self.reference_accuracy,
                "discordance_rate": self.discordance_rate, "discordant": self.discordant,
                "mde_paired": self.mde_paired, "mde_unpaired": self.mde_unpaired,
                "method": self.method}


def paired_power(d: int, f: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Power of the exact two-sided sign test on d discordant pairs when P(gain) = f."""
    k = np.arange(d + 1)
    reject = sign_test_p(k, d) <= alpha
    pmf = stats.binom.pmf(k[None, :], d, np.asarray(f, dtype=np.float64)[:, None])
    return np.asarray((pmf * reject[None, :]).sum(axis=1))


GRID = 5001  # f on 0.5, 0.5001, ..., 1.0


def mde_paired(n: int, discordance_rate: float, power: float = 0.8,
               alpha: float = 0.05) -> tuple[int, float | None]:
    """(D, MDE) of the paired design; MDE None when undetectable.

    The smallest f on the grid of step 1e-4 with power >= ``power``, found by bisection over
    the grid (the power of the symmetric two-sided sign test grows with f for f >= 1/2), so
    the result equals a scan of the whole grid in O(D log GRID).
    """
    d = round(discordance_rate * n)
    if d == 0:
        return 0, None
    grid = np.linspace(0.5, 1.0, GRID)
    if paired_power(d, grid[-1:], alpha)[0] < power:
        return d, None
    lo, hi = 0, GRID - 1  # power(grid[lo]) < power <= power(grid[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if paired_power(d, grid[mid:mid + 1], alpha)[0] >= power:
            hi = mid
        else:
            lo = mid
    return d, float(d / n * (2 * float(grid[hi]) - 1))


def prompts_needed(discordance_rate: float, target: float, power: float = 0.8,
                   alpha: float = 0.05, max_n: int = 10_000_000) -> int | None:
    """About how many prompts make the paired MDE at most ``target`` (an absolute accuracy
    difference), if the discordance rate stays the same: the smallest N on a grid of 2 %
    steps (from 0.7 x the normal approximation d (z_{1-a/2} + z_power)^2 / target^2) whose
    exact ``mde_paired`` is <= target. None when the rate or target is 0 or N > ``max_n``."""
    if discordance_rate <= 0 or target <= 0:
        return None
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(1, int(0.7 * discordance_rate * z * z / (target * target)))
    while n <= max_n:
        m = mde_paired(n, discordance_rate, power, alpha)[1]
        if m is not None and m <= target:
            return n
        n = max(n + 1, int(np.ceil(n * 1.02)))
    return None


def mde_unpaired(n: int, p: float, power: float = 0.8, alpha: float = 0.05) -> float:
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * np.sqrt(2 * p * (1 - p) / n))


def mde(benchmark: str, n: int, reference_accuracy: float | None,
        discordance_rates: np.ndarray, power: float = 0.8, alpha: float = 0.05) -> Mde:
    rates = discordance_rates[np.isfinite(discordance_rates)]
    rate = float(np.median(rates)) if rates.size else None
    d, paired = (None, None) if rate is None else mde_paired(n, rate, power, alpha)
    unpaired = None if reference_accuracy is None else mde_unpaired(n, reference_accuracy, power, alpha)
    return Mde(benchmark, n, reference_accuracy, rate, d, paired, unpaired)
