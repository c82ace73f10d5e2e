"""Streaming fidelity statistics: feed per-token metrics chunk by chunk, get the batch result.

`FidelityAccumulator` keeps llama.cpp-style running sums (float64), the per-token KLD values
(T floats, for exact percentiles), per-window sums (for the block bootstrap) and per-bucket
sums; memory is O(T), never O(T x V). Its `result()` equals `summarize()` on the concatenated
metrics: percentiles, min, max, counts and bootstrap draws exactly, sums up to float rounding
of the chunked summation. A window may span several updates (its id is reused).
"""

from __future__ import annotations

import numpy as np

from quantfid.metrics.summary import FidelityStats, Parts, stats_from_parts
from quantfid.metrics.types import TokenMetrics


class FidelityAccumulator:
    """Accumulates TokenMetrics chunks; `result()` gives the same FidelityStats as summarize."""

    def __init__(self) -> None:
        self._parts = Parts()

    @property
    def n_tokens(self) -> int:
        return self._parts.n

    def update(self, tm: TokenMetrics, window_ids: np.ndarray | None = None) -> None:
        """Add a chunk; window_ids: (len(tm),) window id per token, or None (each token is its
        own bootstrap block). Every chunk must agree on whether NLLs (targets) are present."""
        self._parts.add(tm, window_ids)

    def merge(self, other: FidelityAccumulator) -> None:
        """Fold in another accumulator (e.g. from a parallel job) whose tokens come after
        this one's; windows with the same id in both are one window."""
        self._parts.merge(other._parts)

    def result(self, n_boot: int = 1000, rng: np.random.Generator | None = None
               ) -> FidelityStats:
        """Statistics over everything added so far (see quantfid.metrics.summary)."""
        return stats_from_parts(self._parts, n_boot=n_boot, rng=rng)
