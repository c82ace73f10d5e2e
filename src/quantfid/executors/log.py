"""What a run reports while it works: timings per stage, one progress bar per stage on stderr,
and lines when stderr is not a terminal (so a log file shows progress too).

Stages: ``setup``, ``reference`` (the reference's stores and benchmarks), ``quantize`` (building
or loading a quant), ``measure`` (fidelity units), ``bench`` (benchmark units), ``noise`` (the
noise floor), ``ray`` (starting or joining a Ray cluster and its workers), ``ingest``,
``analysis``, ``report``. Wall seconds and process CPU seconds (all threads: a busy machine
shows CPU << wall x threads) are accumulated per stage; under the Ray executor the unit
stages add up what every worker spent, so they can exceed the run's wall time.

Each bar counts its stage's units done, with the units running and failed (a failed unit is
one whose worker died; it is retried) and the run's ETA: forward tokens still to do over the
speed so far. Without a terminal the local executor prints one line per model, the Ray
executor one line per unit (units of several models finish interleaved).

``QUANTFID_STAGE_TRACE=FILE`` appends ``<pid> <stage>`` to FILE whenever a stage starts, in
the driver and in Ray workers: the fault-injection tests kill a run at a chosen stage with
it, and it shows where a slow run is.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

UNIT_STAGES = ("reference", "measure", "bench", "noise")
TRACE_ENV = "QUANTFID_STAGE_TRACE"


def trace(stage: str) -> None:
    """Append ``<pid> <stage>`` to the file named by ``QUANTFID_STAGE_TRACE`` (if set)."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    with contextlib.suppress(OSError), open(path, "a") as fh:
        fh.write(f"{os.getpid()} {stage}\n")
        fh.flush()


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        trace(name)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, time.process_time() - c0)

    def add(self, name: str, wall: float, cpu: float = 0.0) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu


class RunLog:
    """Timings, bars and counts of one run over ``units`` (the units still to do)."""

    def __init__(self, units: Sequence[Any], *, progress: bool | None = None,
                 log: IO[str] | None = None, timings: Timings | None = None) -> None:
        from tqdm import tqdm

        self.out = log or sys.stderr
        self.t = timings or Timings()
        self.units_run = 0
        self.failed = 0
        self.running = 0
        self.total = len(units)
        self.per_unit = False  # one line per unit (parallel executors) instead of per model
        self.tokens_left = int(sum(getattr(u, "forward_tokens", 0) for u in units))
        self.tokens_done = 0
        self._t0: float | None = None
        totals: dict[str, int] = {}
        for u in units:
            totals[u.stage] = totals.get(u.stage, 0) + 1
        self._running = dict.fromkeys(totals, 0)
        self._failed = dict.fromkeys(totals, 0)
        disable = None if progress is None else not progress
        self.bars = {s: tqdm(total=n, desc=f"{s:9s}", unit="unit", file=sys.stderr,
                             position=i, leave=False, dynamic_ncols=True, disable=disable)
                     for i, (s, n) in enumerate(totals.items())}
        self.tty = bool(getattr(sys.stderr, "isatty", lambda: False)()) and progress is not False
        self._model: str | None = None
        self._since: dict[str, float] = {}

    def say(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return self.t.stage(name)

    # ---- counts ---------------------------------------------------------------------------
    def unit_start(self, unit: Any) -> None:
        """A unit starts (before its model is opened): counted as running; without a
        terminal, the local executor's line for the previous model when the model changes."""
        if self._t0 is None:
            self._t0 = time.perf_counter()
        self.running += 1
        self._running[unit.stage] = self._running.get(unit.stage, 0) + 1
        if not self.tty and not self.per_unit:
            self._model_line(unit.model.id)
        self._postfix(unit.stage, unit.model.id)

    def _stop(self, unit: Any) -> None:
        self.running = max(0, self.running - 1)
        self._running[unit.stage] = max(0, self._running.get(unit.stage, 0) - 1)

    def unit_done(self, unit: Any, seconds: float, where: str | None = None) -> None:
        self._stop(unit)
        self.units_run += 1
        tok = int(getattr(unit, "forward_tokens", 0))
        self.tokens_done += tok
        self.tokens_left = max(0, self.tokens_left - tok)
        bar = self.bars.get(unit.stage)
        if bar is not None:
            bar.update(1)
        self._postfix(unit.stage, unit.model.id)
        if not self.tty and self.per_unit:
            on = f" on {where}" if where else ""
            self.say(f"[{self.units_run}/{self.total}] {unit.model.id} {unit.stage} "
                     f"{seconds:.1f}s{on} ({self.counts()})")

    def unit_failed(self, unit: Any, why: str) -> None:
        """A unit was lost (its worker died); it will be retried or the run stops."""
        self._stop(unit)
        self.failed += 1
        self._failed[unit.stage] = self._failed.get(unit.stage, 0) + 1
        self._postfix(unit.stage, unit.model.id)
        self.say(f"unit lost: {unit.model.id} {unit.stage}: {why}")

    def eta(self) -> float | None:
        """Seconds left at the speed so far (forward tokens per wall second); None before
        the first unit finished."""
        if self._t0 is None or self.tokens_done == 0:
            return None
        return (time.perf_counter() - self._t0) / self.tokens_done * self.tokens_left

    def counts(self) -> str:
        eta = self.eta()
        left = "" if eta is None else f", ETA {eta / 60:.1f} min"
        return f"running {self.running}, failed {self.failed}{left}"

    def _postfix(self, stage: str, model: str) -> None:
        bar = self.bars.get(stage)
        if bar is None or bar.disable:
            return
        eta = self.eta()
        left = "" if eta is None else f" ETA {eta / 60:.1f}m"
        bar.set_postfix_str(f"{model} run {self._running.get(stage, 0)} "
                            f"fail {self._failed.get(stage, 0)}{left}", refresh=True)

    # ---- lines --------------------------------------------------------------------------------
    def _model_line(self, model: str) -> None:
        """One line when the run moves to another model (and at the end)."""
        if model == self._model:
            return
        if self._model is not None:
            spent = {k: v - self._since.get(k, 0.0) for k, v in self.t.seconds.items()
                     if v - self._since.get(k, 0.0) > 0.05}
            self.say(f"[{self.units_run}/{self.total}] {self._model}: " +
                     ", ".join(f"{k} {v:.1f}s" for k, v in spent.items()))
        self._model = model
        self._since = dict(self.t.seconds)

    def close(self) -> None:
        if not self.tty and not self.per_unit and self._model is not None:
            self._model_line("")
        for b in self.bars.values():
            b.close()


Say = Callable[[str], None]
