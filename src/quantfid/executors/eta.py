"""The ETA a run prints before it starts: forward tokens to do over a measured speed.

Speed: a 128-token window through the reference, scored the way fidelity units score (the
LM head and a reduction over every position): the fastest of six timed runs after an
untimed cold start (one timed run of a quarter second was seen to read half the speed).
Each unit's tokens are then divided by that speed times its kind's factor
(``SPEED_FACTOR``: corpus windows are long and their reductions heavier; benchmark prompts are
short, several choices each, and pay the per-prompt fidelity), calibrated on the default
study (see the constants). The estimate is advisory: it never fails a run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

WARMUP_TOKENS = 128
PROBE_REPEATS = 6  # ~1.3 s; three read 517-622 tok/s minutes apart on one machine
CONSERVATIVE_TOKENS_PER_S = 400.0
# Stage tokens/s over the probe's, float32 products through oneDNN (2-core AMD EPYC,
# 2026-12-02). Two fresh-clone `make demo` runs had the same stage times (bench 702 / 703 s,
# measure 381 / 391 s) but probes of ~621 and ~792 tok/s: with factors 0.95 / 0.90 their ETAs
# came out +6 % and -16 % of the study's time after the ETA line. These factors split the
# difference (about +12 % and -10 %); benchmarks/bench_study.py runs slower per token still.
SPEED_FACTOR = {"corpus": 0.89, "prompts": 0.85}
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
    """Forward tokens/s of ``backend`` on a 128-token window (fastest of ``PROBE_REPEATS``)."""
    try:
        ids = np.full((1, WARMUP_TOKENS), backend.eos_id() or 0, dtype=np.int64)
        for _ in backend.score_windows(ids[:, :16], 0, 15, _Argmax()):
            pass
        best = float("inf")
        for _ in range(PROBE_REPEATS):
            t0 = time.perf_counter()
            for _ in backend.score_windows(ids, 0, WARMUP_TOKENS - 1, _Argmax()):
                pass
            best = min(best, time.perf_counter() - t0)
    except Exception:  # the ETA is advisory: never fail a run on it
        return CONSERVATIVE_TOKENS_PER_S
    return max(10.0, WARMUP_TOKENS / max(best, 1e-6))


def unit_kind(unit: Any) -> str:
    """``prompts`` for a benchmark unit, else ``corpus``."""
    from quantfid.units.defs import BenchUnit

    return "prompts" if isinstance(unit, BenchUnit) else "corpus"


def estimate(units: Sequence[Any], pool: Any) -> Estimate:
    """Tokens to do, the overall speed they imply, and the seconds (compute plus
    ``SECONDS_PER_MODEL`` per model)."""
    tok = int(sum(u.forward_tokens for u in units))
    if not units:
        return Estimate(0, 0.0, 0.0)
    probe = tokens_per_s(pool.reference())
    compute = sum(u.forward_tokens / (probe * SPEED_FACTOR[unit_kind(u)]) for u in units)
    models = len({u.model.key for u in units})
    return Estimate(tok, tok / max(compute, 1e-9), compute + SECONDS_PER_MODEL * models)
