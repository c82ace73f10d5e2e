"""The Ray executor: a study's units on the workers of a Ray cluster.

**Actors, not tasks.** Each worker is one Ray actor holding a model pool
(:class:`quantfid.executors.worker.Worker`, one per ``num_cpus``/``num_gpus``/``memory`` slot
the cluster holds, at most one per unit). A model is the expensive part of a unit: loading the
reference, building a recipe quant from it, loading a quant's weights. A task per unit would
pay that for every unit, or depend on which process Ray happens to reuse; an actor keeps the
reference loaded for its whole life and one quant at a time, and the driver sends all of a
quant's units to the actor that holds it (:mod:`quantfid.executors.schedule`), so a quant is
built once per run like in the local executor. The price is that the driver schedules (a
dozen lines: dependencies, then affinity) instead of Ray.

**One writer.** Workers return :class:`~quantfid.units.UnitOutput` objects (parts, records,
manifest entries), with staged array directories as bytes; the driver unpacks those under
``<workspace>/.staging`` and commits each unit with :func:`~quantfid.units.commit_output`
as it arrives, exactly like the local executor, so the format, resume and skipping of finished
units are the same whichever executor ran them.

**The reference store, written once, read by every worker.** The reference unit's store is
committed by the driver; a worker reads it from the workspace path when the workspace is
on storage the worker sees (checked with a probe file), else from a copy of it the driver
puts once into Ray's object store and each worker unpacks once into its scratch directory
(``QUANTFID_RAY_COPY_STORES=1`` takes that path even where the workspace is visible).
Limits of the object-store path: each store is held whole in the object store (by default
30 % of a node's memory; larger objects spill to disk under Ray's temp directory) and once more
on each worker's disk; results travel back the same way, so a node's object store must hold
the largest store (a compact store is ~ 8 bytes x top-k per scored token).

**Faults.** A worker that dies (killed, out of memory, node lost) costs its unit: the unit is
retried on a fresh worker up to ``max_retries`` times, the study stops after that, and
whatever was committed stays. A unit that raises :class:`~quantfid.errors.QuantfidError`
(bad input, a worker refusing to run another quantfid or other model files) stops the study
with that error, never retried (an ``OSError`` too: one line, as on the driver); any other
exception is a bug and stops it with the worker's traceback. Ctrl-C (or SIGTERM) on the
driver kills the workers at once (their units are lost, nothing half-written reaches the
workspace) and a re-run with either executor resumes.

**Logs.** Workers' stdout and stderr reach the driver through Ray (lines prefixed with the
worker's pid); each worker announces itself there when it starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantfid import atomic, interrupts
from quantfid.errors import QuantfidError
from quantfid.executors import cluster, staging
from quantfid.executors.cluster import Resources
from quantfid.executors.fingerprint import fingerprint
from quantfid.executors.log import TRACE_ENV, RunLog
from quantfid.executors.schedule import Scheduler
from quantfid.executors.transfer import pack_dir, unpack_dir
from quantfid.executors.worker import Worker, WorkerResult, needs
from quantfid.store.workspace import Workspace
from quantfid.units import Unit, commit_output

FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", TRACE_ENV, "QUANTFID_CPU_GEMM",
                 "QUANTFID_NUMBA_CACHE")
COPY_ENV = "QUANTFID_RAY_COPY_STORES"  # "1": send stores through the object store even to
# workers that see the workspace (when the network is faster than the shared storage)
POLL_S = 0.5


@dataclass
class Slot:
    """One worker actor: its handle, the model it holds and the unit it runs."""

    actor: Any
    name: str = "starting"
    ready: bool = False
    shared: bool = False
    holds: str | None = None
    unit: Any = None


@dataclass
class RayExecutor:
    """Runs units on Ray (see the module docstring). ``address``: a running cluster
    (``host:port``), empty to start one on this machine for the run."""

    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0
    max_retries: int = 3
    startup_timeout: float = 600.0
    name: str = field(default="ray", init=False)

    def run(self, units: Sequence[Unit], pool: Any, ws: Workspace, log: RunLog) -> None:
        if not units:
            return
        log.per_unit = True
        tmp = staging.new(ws.path, self.name)
        t0 = time.perf_counter()
        try:
            with cluster.connect(self.address) as desc:
                run = _Run(self, units, pool, ws, log, tmp)
                try:
                    run.start(desc, t0)
                    run.loop()
                    run.close()
                finally:
                    run.kill()
                    t1 = time.perf_counter()
            log.t.add("ray", time.perf_counter() - t1)
        finally:
            pool.release()
            shutil.rmtree(tmp, ignore_errors=True)


class _Run:
    """The driver's side of one run: workers, units in flight, commits."""

    def __init__(self, ex: RayExecutor, units: Sequence[Unit], pool: Any, ws: Workspace,
                 log: RunLog, tmp: Path) -> None:
        import ray

        self.ray = ray
        self.ex, self.pool, self.ws, self.log, self.tmp = ex, pool, ws, log, tmp
        self.res = Resources(ex.num_cpus, ex.num_gpus, ex.memory)
        self.sched = Scheduler(units)
        self.slots: list[Slot] = []
        self.inflight: dict[Any, tuple[Slot, Any]] = {}
        self.objects: dict[str, Any] = {}
        self.failed_starts = 0
        self.units = units
        self._t0 = 0.0
        self._last = time.perf_counter()
        self._first_ready = False

    # ---- workers --------------------------------------------------------------------------
    def start(self, desc: str, t0: float) -> None:
        self._t0 = t0
        self.fp = fingerprint()
        self.nonce = uuid.uuid4().hex
        self.probe = (self.tmp / "probe").relative_to(self.ws.path).as_posix()
        if os.environ.get(COPY_ENV) != "1":
            atomic.write_text(self.ws.path / self.probe, self.nonce)
        env = {"TQDM_DISABLE": "1", **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
        self.actor_cls = self.ray.remote(Worker).options(
            **self.res.options(), max_restarts=0, max_task_retries=0,
            runtime_env={"env_vars": env})
        n = cluster.capacity(self.res, limit=len(self.units))
        self.log.say(f"ray: {desc}; starting {n} worker(s) of {self.res.describe()}")
        for _ in range(n):
            self._spawn()

    def _spawn(self) -> None:
        threads = max(1, int(self.res.num_cpus))
        slot = Slot(self.actor_cls.remote(self.pool.spec(), threads))
        self.slots.append(slot)
        ref = slot.actor.hello.remote(self.fp, str(self.ws.path.resolve()), self.probe, self.nonce)
        self.inflight[ref] = (slot, None)

    def _drop(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(slot.actor, no_restart=True)
        if slot in self.slots:
            self.slots.remove(slot)

    def close(self) -> None:
        """After the last unit: let the workers drop their scratch directories."""
        refs = [s.actor.close.remote() for s in self.slots if s.ready]
        if refs:
            with contextlib.suppress(Exception):
                self.ray.wait(refs, num_returns=len(refs), timeout=10.0)

    def kill(self) -> None:
        """End every worker now (their running units are lost, not committed)."""
        for slot in list(self.slots):
            self._drop(slot)
        self.inflight.clear()

    # ---- the loop -------------------------------------------------------------------------
    def loop(self) -> None:
        while not self.sched.finished():
            self._dispatch()
            if not self.inflight:
                raise QuantfidError("no Ray worker is left to run the remaining units")
            done, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
            interrupts.raise_if_signalled()  # a Ctrl-C Ray's wait took and dropped
            for ref in done:
                self._handle(ref)
            if not done:
                self._watchdog()

    def _dispatch(self) -> None:
        free = [s for s in self.slots if s.ready and s.unit is None]
        for s in free:
            unit = self.sched.pick_own(s.holds)
            if unit is not None:
                self._submit(s, unit)
        for s in [s for s in free if s.unit is None]:
            unit = self.sched.pick(s.holds, [o.holds for o in self.slots if o is not s])
            if unit is not None:
                self._submit(s, unit)

    def _submit(self, slot: Slot, unit: Any) -> None:
        arrays = {} if slot.shared else {rel: self._object(rel) for rel in needs(unit)}
        ref = slot.actor.run.remote(unit, arrays)
        self.inflight[ref] = (slot, unit)
        slot.unit = unit
        if unit.model.spec.role != "reference":
            slot.holds = unit.model.key  # the quant this worker builds now and keeps
        self.log.unit_start(unit)

    def _object(self, rel: str) -> Any:
        """A committed store, put once into the object store."""
        if rel not in self.objects:
            self.objects[rel] = self.ray.put(pack_dir(self.ws.path / rel))
        return self.objects[rel]

    def _handle(self, ref: Any) -> None:
        from ray.exceptions import RayTaskError

        slot, unit = self.inflight.pop(ref)
        try:
            res = self.ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, QuantfidError | OSError):  # one line, as on the driver
                raise cause from None
            raise  # a bug: the worker's traceback
        except _lost_types() as e:
            self._lost(slot, unit, e)
            return
        self._last = time.perf_counter()
        if unit is None:
            self._ready(slot, res)
            return
        slot.unit = None
        self._commit(unit, res)
        self.sched.complete(unit)
        for stage, s in res.seconds.items():
            self.log.t.add(stage, s, res.cpu.get(stage, 0.0))
        self.log.unit_done(unit, res.output.seconds, res.worker)

    def _ready(self, slot: Slot, hello: dict[str, Any]) -> None:
        slot.ready, slot.shared, slot.name = True, bool(hello["shared"]), str(hello["name"])
        self.failed_starts = 0
        if not self._first_ready:
            self._first_ready = True
            self.log.t.add("ray", time.perf_counter() - self._t0)

    def _lost(self, slot: Slot, unit: Any, e: BaseException) -> None:
        why = f"worker {slot.name} lost ({type(e).__name__}: {_first_line(e)})"
        self._drop(slot)
        if unit is None:
            self.failed_starts += 1
            if self.failed_starts > self.ex.max_retries:
                raise QuantfidError(f"Ray workers fail to start: {why}")
        else:
            self.log.unit_failed(unit, why)
            tries = self.sched.retry(unit)
            if tries > self.ex.max_retries:
                raise QuantfidError(f"{unit.model.id} {unit.stage}: lost {tries} times, giving up "
                                    f"(last: {why}); finished units are kept, re-run to resume")
        self._spawn()

    def _watchdog(self) -> None:
        if any(s.ready for s in self.slots):
            return
        waited = time.perf_counter() - self._last
        if waited > self.ex.startup_timeout:
            raise QuantfidError(f"no Ray worker started within {waited:.0f} s (cluster: "
                                f"{cluster.describe()}; each worker needs {self.res.describe()})")

    def _commit(self, unit: Any, res: WorkerResult) -> None:
        out = res.output
        for i, (rel, files) in enumerate(res.blobs.items()):
            out.arrays[rel] = unpack_dir(files, self.tmp / f"{unit.hash[:16]}-{i}")
        record = self.pool.record_of(unit)
        if record is not None:
            out.models.append(record)
        commit_output(self.ws, out)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _lost_types() -> tuple[type[BaseException], ...]:
    from ray import exceptions as x

    return (x.RayActorError, x.WorkerCrashedError, x.NodeDiedError, x.OutOfMemoryError,
            x.ObjectLostError, x.LocalRayletDiedError)
