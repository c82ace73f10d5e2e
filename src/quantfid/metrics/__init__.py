"""Fidelity metrics: pure per-token functions, streaming accumulators, aggregations."""

from quantfid.metrics.stream import FidelityAccumulator
from quantfid.metrics.summary import FidelityStats, summarize
from quantfid.metrics.token import token_metrics
from quantfid.metrics.types import STATS_KEYS, TokenMetrics

__all__ = ["STATS_KEYS", "FidelityAccumulator", "FidelityStats", "TokenMetrics", "summarize",
           "token_metrics"]
