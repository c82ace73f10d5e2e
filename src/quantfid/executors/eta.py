"""The ETA a run prints before it starts: forward tokens to do over a measured speed.

Speed: one warm-up window through the reference (timed after an untimed cold start), scored
the way fidelity units score (the LM head and a reduction over every position), discounted
for longer contexts. The estimate is advisory: it never fails a run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WARMUP_TOKENS = 128
CONSERVATIVE_TOKENS_PER_S = 400.0
SECONDS_PER_MODEL = 2.0  # building a recipe quant or loading a model, beside its forwards


@dataclass(frozen=True)
class Estimate:
    tokens: int
    tokens_per_s: float
    seconds: float


class _Argmax:
    """A reducer as costly as a light comparison: log-softmax and argmax of every row."""

    def full(self, window: int, pos0: int, logits: Any) -> Any:
        return logits.float().log_softmax(-1).argmax(-1)

    def topk(self, window: int, pos0: int, rows: Any) -> Any:
        return None

    def wanted_ids(self, window: int, pos0: int, n: int) -> None:
        return None


def tokens_per_s(backend: Any) -> float:
    """Forward tokens/s of ``backend`` on a short window (0.6 x the measured speed)."""
    try:
        ids = np.full((1, WARMUP_TOKENS), backend.eos_id() or 0, dtype=np.int64)
        for _ in backend.score_windows(ids[:, :16], 0, 15, _Argmax()):
            pass
        t0 = time.perf_counter()
        for _ in backend.score_windows(ids, 0, WARMUP_TOKENS - 1, _Argmax()):
            pass
        dt = time.perf_counter() - t0
    except Exception:  # the ETA is advisory: never fail a run on it
        return CONSERVATIVE_TOKENS_PER_S
    return max(10.0, 0.6 * WARMUP_TOKENS / max(dt, 1e-6))


def estimate(units: Sequence[Any], pool: Any) -> Estimate:
    tok = int(sum(u.forward_tokens for u in units))
    if not units:
        return Estimate(0, 0.0, 0.0)
    tps = tokens_per_s(pool.reference())
    models = len({u.model.key for u in units})
    return Estimate(tok, tps, tok / tps + SECONDS_PER_MODEL * models)
