"""The local executor: units one after another in this process (the default).

Units arrive grouped by model (the planner's order), so each model is loaded or built once
for all its units; the reference stays loaded. Each unit's output is committed to the
workspace as soon as it finishes, so an interrupted run loses at most the unit in progress
(:mod:`quantfid.executors.staging`: what a killed run staged is swept by the next one).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from quantfid.executors import staging
from quantfid.executors.log import RunLog
from quantfid.pool import ModelPool
from quantfid.store.workspace import Workspace
from quantfid.units import Unit, UnitContext, commit_output, run_unit


class LocalExecutor:
    name = "local"

    def run(self, units: Sequence[Unit], pool: ModelPool, ws: Workspace, log: RunLog) -> None:
        tmp = staging.new(ws.path, self.name)
        ctx = UnitContext(ws.path, stage=tmp, progress=log.tty)
        try:
            for unit in units:
                log.unit_start(unit)
                with log.stage("reference" if unit.model.spec.role == "reference" else "quantize"):
                    backend = pool.open(unit.model)
                with log.stage(unit.stage):
                    out = run_unit(unit, backend, ctx, pool.record_of(unit))
                    commit_output(ws, out)
                log.unit_done(unit, out.seconds)
        finally:
            pool.release()
            shutil.rmtree(tmp, ignore_errors=True)
