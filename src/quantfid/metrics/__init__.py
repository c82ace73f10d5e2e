"""Fidelity metrics: pure per-token functions, streaming accumulators, aggregations."""

from quantfid.metrics.types import STATS_KEYS, TokenMetrics

__all__ = ["STATS_KEYS", "TokenMetrics"]
