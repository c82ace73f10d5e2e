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
