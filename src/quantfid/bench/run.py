"""Run built-in tasks on a loaded model into a workspace (what ``quantfid bench`` and the
study call)."""

from __future__ import annotations

from collections.abc import Sequence

from quantfid.backends.base import LoadedModel
from quantfid.bench.prompt_fidelity import BenchResult, evaluate
from quantfid.bench.tasks import DEFAULT_TASKS, get_task, load_prompts, resolve_tasks
from quantfid.store.workspace import Workspace


def run_task(ws: Workspace, lm: LoadedModel, task: str, *, full: bool = False,
             limit: int | None = None, batch_size: int = 4,
             progress: bool = True) -> BenchResult:
    """One built-in task: outcomes (``task`` and ``task:acc_norm``) and, against the
    workspace reference, per-prompt fidelity; the reference must run first."""
    t = get_task(task)
    prompts = load_prompts(task, full=full, limit=limit)
    info = {"source": getattr(t, "source", ""), "licence": getattr(t, "licence", ""),
            "chance": t.chance, "full": full, "limit": limit}
    return evaluate(ws, lm, task, prompts, batch_size=batch_size, progress=progress, info=info)


def run_tasks(ws: Workspace, lm: LoadedModel, tasks: Sequence[str] | str = DEFAULT_TASKS, *,
              full: bool = False, limit: int | None = None, batch_size: int = 4,
              progress: bool = True) -> list[BenchResult]:
    """Every task of ``tasks`` (names, ``"all"``, or comma-separated) in order."""
    return [run_task(ws, lm, t, full=full, limit=limit, batch_size=batch_size,
                     progress=progress) for t in resolve_tasks(tasks if isinstance(tasks, str)
                                                                else list(tasks))]
