"""Built-in per-prompt benchmarks, lm-eval-style scoring and per-prompt fidelity.

Public API:

- :func:`run_task` / :func:`run_tasks` (``ws, lm, task(s), full=, limit=, batch_size=``) ->
  :class:`BenchResult`: outcomes + per-prompt fidelity for built-in tasks;
- :func:`evaluate` (any prompt list) and :func:`measure_prompts` (``quantfid measure
  --prompts``: reference then every quant of a workspace);
- :func:`score_prompts` / :func:`score_naive`: choice log-likelihoods;
- tasks: :data:`TASKS`, :data:`DEFAULT_TASKS`, :func:`load_prompts`.

Importing this package imports torch (the scorer); the CLI imports it lazily.
"""

from quantfid.bench.prompt_fidelity import (
    BenchResult,
    TextPrompt,
    evaluate,
    load_workspace_model,
    measure_prompts,
    read_prompts_jsonl,
)
from quantfid.bench.run import run_task, run_tasks
from quantfid.bench.score import ChoiceResult, score_naive, score_prompts
from quantfid.bench.tasks import DEFAULT_TASKS, TASKS, get_task, load_prompts, resolve_tasks
from quantfid.bench.types import ChoicePrompt

__all__ = [
    "DEFAULT_TASKS",
    "TASKS",
    "BenchResult",
    "ChoicePrompt",
    "ChoiceResult",
    "TextPrompt",
    "evaluate",
    "get_task",
    "load_prompts",
    "load_workspace_model",
    "measure_prompts",
    "read_prompts_jsonl",
    "resolve_tasks",
    "run_task",
    "run_tasks",
    "score_naive",
    "score_prompts",
]
