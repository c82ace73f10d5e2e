"""Which unit a worker runs next: dependencies first, then model affinity.

A unit is *ready* when the unit it reads from is committed: a fidelity unit needs its
reference store (``unit.ref``, a :class:`~quantfid.units.ReferenceUnit`), a quant's benchmark
unit needs the reference's prompt store (``unit.ref``, the reference's
:class:`~quantfid.units.BenchUnit`); a dependency already done before this run (not among the
units to do) is satisfied. Among ready units a free worker takes, in the plan's order:

1. a unit of the model it holds (a quant is built or loaded once for all its units);
2. a unit of the reference (every worker keeps the reference loaded) or of a model no other
   worker holds;
3. any ready unit (the tail of a run: building a quant twice beats idling).

Pure bookkeeping, no Ray: :mod:`quantfid.executors.ray` drives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _key(unit: Any) -> str:
    return str(unit.hash)


class Scheduler:
    """The units of one run: pending, running and committed (by unit hash)."""

    def __init__(self, units: Sequence[Any]) -> None:
        self.pending: list[Any] = list(units)
        self._todo = {_key(u) for u in units}
        self.done: set[str] = set()
        self.running: dict[str, Any] = {}
        self.attempts: dict[str, int] = {}

    def finished(self) -> bool:
        return not self.pending and not self.running

    def ready(self, unit: Any) -> bool:
        dep = getattr(unit, "ref", None)
        if dep is None or not hasattr(dep, "hash"):
            return True
        return _key(dep) not in self._todo or _key(dep) in self.done

    def pick(self, holds: str | None, others: Iterable[str | None]) -> Any | None:
        """The next unit for a free worker holding model key ``holds`` (None: only the
        reference); ``others``: the model keys the other workers hold."""
        ready = [u for u in self.pending if self.ready(u)]
        if not ready:
            return None
        taken = {k for k in others if k is not None}
        mine = [u for u in ready if u.model.key == holds]
        free = [u for u in ready
                if u.model.spec.role == "reference" or u.model.key not in taken]
        unit = (mine or free or ready)[0]
        self.pending.remove(unit)
        self.running[_key(unit)] = unit
        self.attempts[_key(unit)] = self.attempts.get(_key(unit), 0) + 1
        return unit

    def pick_own(self, holds: str | None) -> Any | None:
        """A ready unit of the model ``holds``, if there is one (first pass over free
        workers, so that no other worker takes a unit its holder could run)."""
        if holds is None:
            return None
        for u in self.pending:
            if u.model.key == holds and self.ready(u):
                return self.pick(holds, ())
        return None

    def complete(self, unit: Any) -> None:
        self.running.pop(_key(unit), None)
        self.done.add(_key(unit))

    def retry(self, unit: Any) -> int:
        """Put a lost unit back at the front; returns how many times it has been tried."""
        self.running.pop(_key(unit), None)
        self.pending.insert(0, unit)
        return self.attempts.get(_key(unit), 0)
