"""Benjamini-Hochberg adjusted p-values (step-up FDR), equal to
``scipy.stats.false_discovery_control(p, method="bh")``; None entries stay None."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bh_adjust(pvalues: Sequence[float | None]) -> list[float | None]:
    """BH-adjusted p-values over the non-None entries: q_(i) = min_{j >= i} p_(j) m / j, <= 1."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and np.isfinite(p)]
    out: list[float | None] = [None] * len(pvalues)
    if not idx:
        return out
    p = np.array([float(pvalues[i]) for i in idx])  # type: ignore[arg-type]
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    q = np.empty(m)
    q[order] = q_sorted
    for j, i in enumerate(idx):
        out[i] = float(q[j])
    return out
