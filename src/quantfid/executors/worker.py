"""The body of one Ray worker (an actor): a model pool that runs units and returns outputs.

One actor per slot of ``num_cpus`` / ``num_gpus`` / ``memory``: it rebuilds the driver's
:class:`~quantfid.pool.ModelPool` from its picklable spec, keeps the reference loaded and one
quant built at a time, so a quant's units sent to the same actor build it once (see
:mod:`quantfid.executors.schedule`). Units run through the same :func:`quantfid.units.run_unit`
as the local executor, with ``threads`` torch threads (the same count as a local run gives the
same bits).

The worker never writes the workspace. It reads reference and prompt stores either from the
workspace itself, when the driver's probe file is visible at the same path (shared storage),
or from copies it unpacks, once, from Ray's object store into its own scratch directory. Array
directories a unit stages go back to the driver as bytes (:mod:`quantfid.executors.transfer`).

Before any unit, :meth:`Worker.hello` refuses a worker whose quantfid version or code differs
from the driver's; before a model's first unit, :meth:`Worker.verify` refuses one whose files
(content hash) or backend identity (dtype, device type, numerics) differ from the plan's.
Both raise :class:`~quantfid.errors.QuantfidError`, which stops the study with that message.
This module imports no Ray: it runs (and is tested) in-process too.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantfid.errors import MismatchError, QuantfidError
from quantfid.executors.fingerprint import Fingerprint, fingerprint
from quantfid.executors.log import Timings
from quantfid.executors.transfer import Files, pack_dir, unpack_dir
from quantfid.units import UnitContext, UnitOutput, run_unit


@dataclass
class WorkerResult:
    """A unit's output (``arrays`` emptied: they travel in ``blobs``) and where it ran."""

    output: UnitOutput
    blobs: dict[str, Files] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    worker: str = ""


class Worker:
    """See the module docstring. ``pool_spec``: :class:`quantfid.pool.PoolSpec`."""

    def __init__(self, pool_spec: Any, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.spec = pool_spec
        self.threads = torch.get_num_threads()
        self.pool: Any = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.scratch = Path(tempfile.mkdtemp(prefix="quantfid-worker-"))
        self.workspace: Path | None = None  # set when the workspace is shared
        self.greeted = False
        self._verified: set[str] = set()

    # ---- start-up -------------------------------------------------------------------------
    def hello(self, expect: Fingerprint, workspace: str, probe: str, nonce: str) -> dict[str, Any]:
        """Check this worker runs the driver's quantfid; find out whether the workspace is
        visible here (``probe``: a file the driver wrote under it, holding ``nonce``)."""
        here = fingerprint()
        if here != expect:
            raise QuantfidError(f"worker {self.name} runs {here.describe()}, the driver "
                                f"{expect.describe()}: install the same quantfid on every node")
        p = Path(workspace) / probe
        try:
            shared = p.is_file() and p.read_text() == nonce
        except OSError:
            shared = False
        self.workspace = Path(workspace) if shared else None
        self.greeted = True
        where = "shared" if shared else "through the object store"
        print(f"quantfid worker {self.name}: {here.describe()}, {self.threads} torch thread(s), "
              f"workspace {where}", file=sys.stderr, flush=True)
        return {"name": self.name, "shared": shared, "threads": self.threads}

    def _pool(self) -> Any:
        if self.pool is None:
            self.pool = self.spec.build()
        return self.pool

    # ---- checks ---------------------------------------------------------------------------
    def verify(self, ref: Any) -> None:
        """Refuse a model whose content hash or backend identity here differs from the
        driver's ``ref`` (:class:`quantfid.models.ModelRef`); checked once per model."""
        if ref.key in self._verified:
            return
        pool = self._pool()
        try:
            if ref.spec.role == "reference":
                mine = pool.ref_ref()
            elif ref.spec.option("perturb"):
                mine = pool.noise_ref(ref.spec.option("perturb"))
            else:
                mine = pool.ref_of(ref.spec)
        except OSError as e:
            raise QuantfidError(f"worker {self.name}: cannot read model {ref.id!r} "
                                f"({e.filename or ref.spec.source}: {e.strerror or e}): the "
                                "same model files must be on every node") from e
        if mine.content != ref.content:
            raise MismatchError(f"worker {self.name}: model {ref.id!r} differs from the driver's "
                                f"(content {mine.content[:12]} here, {ref.content[:12]} on the "
                                "driver): the same model files must be on every node")
        if mine.identity != ref.identity:
            raise MismatchError(f"worker {self.name}: model {ref.id!r} would run as "
                                f"{mine.identity.to_json()} here, {ref.identity.to_json()} in the "
                                "plan; set the device explicitly ([reference] device)")
        self._verified.add(ref.key)

    # ---- units --------------------------------------------------------------------------------
    def run(self, unit: Any, arrays: dict[str, Any]) -> WorkerResult:
        """Run ``unit``; ``arrays``: the stores it reads, workspace-relative path -> packed
        files or an object reference to them (used only when the workspace is not shared)."""
        if not self.greeted:
            raise QuantfidError(f"worker {self.name}: units before hello")
        root = self.workspace or self._materialize(arrays)
        self._check_stored_reference(unit)
        unit = copy.deepcopy(unit)  # arrays Ray hands over are read-only views of its store
        t = Timings()
        with t.stage("reference" if unit.model.spec.role == "reference" else "quantize"):
            self.verify(unit.model)
            backend = self._pool().open(unit.model)
        stage = Path(tempfile.mkdtemp(prefix="stage-", dir=self.scratch))
        try:
            with t.stage(unit.stage):
                out = run_unit(unit, backend, UnitContext(root, stage=stage), None)
            blobs = {rel: pack_dir(p) for rel, p in out.arrays.items()}
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        out.arrays = {}
        return WorkerResult(out, blobs, dict(t.seconds), dict(t.cpu), self.name)

    def _materialize(self, arrays: dict[str, Any]) -> Path:
        """Unpack the stores a unit reads into the scratch directory (once each)."""
        cache = self.scratch / "ws"
        for rel, src in arrays.items():
            dest = cache / rel
            if dest.is_dir():
                continue
            if not isinstance(src, dict):
                import ray

                src = ray.get(src)
            unpack_dir(src, dest)
        return cache

    def _check_stored_reference(self, unit: Any) -> None:
        """A unit compared with a stored reference file (a store directory or a llama.cpp
        kld-base file given by path) reads it at the same path here: it is not shipped."""
        from quantfid.units import StoredReference

        ref = getattr(unit, "ref", None)
        if isinstance(ref, StoredReference) and not Path(ref.path).exists():
            raise QuantfidError(f"worker {self.name}: the stored reference {ref.path} is not "
                                "visible here; put it on storage every node shares")

    def close(self) -> None:
        """Drop the scratch directory and the models."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.pool is not None:
            self.pool.release()
        self.pool = None


def needs(unit: Any) -> list[str]:
    """The workspace-relative stores ``unit`` reads."""
    from quantfid.units import BenchUnit, FidelityUnit, ReferenceUnit

    if isinstance(unit, FidelityUnit) and isinstance(unit.ref, ReferenceUnit):
        return [unit.ref.path]
    if isinstance(unit, BenchUnit) and unit.ref is not None:
        return [unit.store_path]
    return []
