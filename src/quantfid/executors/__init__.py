"""Executors run a plan's units: ``local`` (in this process, the default) or ``ray`` (tasks
on a Ray cluster). Either way the driver is the workspace's only writer and a re-run skips
finished units."""

from __future__ import annotations

from typing import Any

from quantfid.errors import QuantfidError

EXECUTORS = ("local", "ray")


def get_executor(kind: str = "local", **options: Any) -> Any:
    """The executor called ``kind`` (options: ``address``, resources per unit for Ray)."""
    if kind == "local":
        from quantfid.executors.local import LocalExecutor

        return LocalExecutor()
    if kind == "ray":
        from quantfid.executors.ray import RayExecutor

        return RayExecutor(**options)
    raise QuantfidError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")


def run_local(ws: Any, pool: Any, units: Any, progress: bool | None = True) -> set[str]:
    """Run the units of ``units`` not done yet with the local executor (what ``measure`` and
    ``bench`` do); returns the hashes of those that ran."""
    from quantfid.executors.local import LocalExecutor
    from quantfid.executors.log import RunLog

    todo = [u for u in units if not u.done(ws)]
    log = RunLog(todo, progress=progress)
    try:
        LocalExecutor().run(todo, pool, ws, log)
    finally:
        log.close()
    return {u.hash for u in todo}
