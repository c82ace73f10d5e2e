"""The upfront ETA: the probe takes the fastest timed run; units are weighted by kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from quantfid.executors import eta


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0


class _Backend:
    """score_windows costs the next of ``costs`` seconds on the fake clock (the warm-up too)."""

    def __init__(self, clock: _Clock, costs: list[float]) -> None:
        self.clock, self.costs = clock, list(costs)

    def eos_id(self) -> int:
        return 0

    def score_windows(self, ids: np.ndarray, lo: int, hi: int, reducer: Any) -> list[Any]:
        self.clock.now += self.costs.pop(0)
        return []


@dataclass
class _Model:
    key: str


@dataclass
class _Unit:
    forward_tokens: int
    model: _Model


class _Pool:
    def __init__(self, backend: _Backend) -> None:
        self.backend = backend

    def reference(self) -> _Backend:
        return self.backend


def test_probe_is_the_fastest_timed_run_and_units_weigh_by_kind(monkeypatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(eta.time, "perf_counter", lambda: clock.now)
    timed = [0.5, 0.25, 0.4, 0.6, 0.3, 0.45, 0.7, 0.35][:eta.PROBE_REPEATS]
    backend = _Backend(clock, [5.0, *timed])  # warm-up (untimed), then the timed runs
    monkeypatch.setattr(eta, "unit_kind", lambda u: "prompts" if u.model.key == "b" else "corpus")
    units = [_Unit(1000, _Model("a")), _Unit(3000, _Model("a")), _Unit(2000, _Model("b"))]
    est = eta.estimate(units, _Pool(backend))
    probe = eta.WARMUP_TOKENS / 0.25
    want = (4000 / (probe * eta.SPEED_FACTOR["corpus"])
            + 2000 / (probe * eta.SPEED_FACTOR["prompts"]) + 2 * eta.SECONDS_PER_MODEL)
    assert est.tokens == 6000
    assert est.seconds == pytest.approx(want)
    assert est.tokens_per_s == pytest.approx(6000 / (want - 2 * eta.SECONDS_PER_MODEL))


def test_a_failing_probe_falls_back_to_the_conservative_speed() -> None:
    class Broken(_Backend):
        def score_windows(self, *a: Any) -> list[Any]:
            raise RuntimeError("no")

    assert eta.tokens_per_s(Broken(_Clock(), [])) == eta.CONSERVATIVE_TOKENS_PER_S


def test_benchmark_units_are_prompts_and_the_rest_corpus() -> None:
    from quantfid.units.defs import BenchUnit

    assert eta.unit_kind(object.__new__(BenchUnit)) == "prompts"
    assert eta.unit_kind(object()) == "corpus"
