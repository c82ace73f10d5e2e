"""What a run reports while it works: timings per stage, one progress bar per stage on stderr,
and one line per model when stderr is not a terminal (so a log file shows progress too).

Stages: ``setup``, ``reference`` (the reference's stores and benchmarks), ``quantize`` (building
or loading a quant), ``measure`` (fidelity units), ``bench`` (benchmark units), ``noise`` (the
noise floor), ``ingest``, ``analysis``, ``report``. Wall seconds and process CPU seconds (all
threads: a busy machine shows CPU << wall x threads) are accumulated per stage.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

UNIT_STAGES = ("reference", "measure", "bench", "noise")


@dataclass
class Timings:
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
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
        totals: dict[str, int] = {}
        for u in units:
            totals[u.stage] = totals.get(u.stage, 0) + 1
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

    def unit_start(self, unit: Any) -> None:
        """Before a unit's model is opened: a line for the previous model when it changes."""
        if not self.tty:
            self._model_line(unit.model.id)

    def unit_done(self, unit: Any, seconds: float) -> None:
        self.units_run += 1
        bar = self.bars.get(unit.stage)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{unit.model.id}", refresh=False)

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
        if not self.tty and self._model is not None:
            self._model_line("")
        for b in self.bars.values():
            b.close()


Say = Callable[[str], None]
