"""The Ray driver's choice of the next unit: dependencies, then model affinity."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from quantfid.executors.schedule import Scheduler


@dataclass(eq=False)
class U:
    hash: str
    model_key: str
    ref: Any = None
    role: str = "quant"
    model: Any = field(init=False)

    def __post_init__(self) -> None:
        self.model = SimpleNamespace(key=self.model_key, spec=SimpleNamespace(role=self.role))


def plan() -> list[U]:
    """The planner's order: reference store and benchmark, then per quant its two units."""
    rs = U("rs", "ref", role="reference")
    rb = U("rb", "ref", role="reference")
    out = [rs, rb]
    for q in ("q8", "q4", "q2"):
        out += [U(f"{q}-fid", q, ref=rs), U(f"{q}-bench", q, ref=rb)]
    return out


def test_dependencies_first_then_each_quant_stays_on_its_worker():
    s = Scheduler(plan())
    a = s.pick(None, [None])
    b = s.pick(None, [None])
    assert (a.hash, b.hash) == ("rs", "rb")  # both workers hold the reference
    assert s.pick(None, [None]) is None  # every quant unit waits for a reference store
    s.complete(a)
    c = s.pick(None, [None])
    assert c.hash == "q8-fid"
    s.complete(c)
    assert s.pick_own("q8") is None  # q8's bench waits for the reference benchmark
    assert s.pick("q8", [None]).hash == "q4-fid"  # so the worker moves on to a free quant
    s.complete(b)
    # the worker that holds q8 takes q8's bench; the other one a quant nobody holds
    assert s.pick_own("q8").hash == "q8-bench"
    assert s.pick(None, ["q8", "q4"]).hash == "q2-fid"
    assert s.pick("q2", ["q8"]).hash == "q2-bench"
    assert s.pick("q8", ["q2"]).hash == "q4-bench"  # the tail: steal rather than idle
    assert s.pick(None, ["q2", "q4"]) is None and not s.finished()
    for u in list(s.running.values()):
        s.complete(u)
    assert s.finished() and s.done == {u.hash for u in plan()}


def test_units_done_before_the_run_are_satisfied_dependencies():
    units = plan()[2:]  # the reference's units finished in an earlier run
    s = Scheduler(units)
    assert s.pick(None, []).hash == "q8-fid"
    assert s.pick_own("q8").hash == "q8-bench"


def test_a_lost_unit_goes_back_first_and_counts_its_tries():
    s = Scheduler(plan())
    a = s.pick(None, [])
    assert s.retry(a) == 1 and s.pending[0] is a and not s.running
    assert s.pick(None, []) is a and s.retry(a) == 2
    assert s.attempts["rs"] == 2
