"""Per-prompt text kept from ingested logs, so per-prompt fidelity can be measured later.

Stored in the workspace table ``prompts``, one part per model x benchmark. Columns:
``model, benchmark, prompt_id, prompt, continuations (list), gold (int or null),
target, responses (list), contexts (list), source``.

- ``prompt``: the full text the model was conditioned on (few-shot examples included).
- ``continuations``: the candidate answers scored by log-likelihood (multiple choice:
  one per choice, in order; ``loglikelihood`` tasks: the one continuation); empty for
  generation tasks.
- ``gold``: the index of the correct continuation, when known.
- ``target``: the gold answer as text, when the source logs it.
- ``responses``: the model's own outputs (generation tasks, LiveCodeBench ``code_list``).
- ``contexts``: per-choice contexts when they differ by choice (lm-eval
  ``multiple_input`` tasks such as winogrande); empty when all equal ``prompt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

TABLE = "prompts"

SCHEMA = pa.schema([
    ("model", pa.string()), ("benchmark", pa.string()), ("prompt_id", pa.string()),
    ("prompt", pa.string()), ("continuations", pa.list_(pa.string())),
    ("gold", pa.int64()), ("target", pa.string()), ("responses", pa.list_(pa.string())),
    ("contexts", pa.list_(pa.string())), ("source", pa.string()),
])


@dataclass(frozen=True)
class PromptText:
    """One benchmark prompt's text as the source tool logged it (see module docstring)."""

    benchmark: str
    prompt_id: str
    prompt: str
    continuations: tuple[str, ...] = ()
    gold: int | None = None
    target: str | None = None
    responses: tuple[str, ...] = ()
    contexts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "prompt_id": self.prompt_id,
                "prompt": self.prompt, "continuations": list(self.continuations),
                "gold": self.gold, "target": self.target,
                "responses": list(self.responses), "contexts": list(self.contexts)}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> PromptText:
        return cls(benchmark=row["benchmark"], prompt_id=str(row["prompt_id"]),
                   prompt=row["prompt"] or "",
                   continuations=tuple(row.get("continuations") or ()),
                   gold=row.get("gold"), target=row.get("target"),
                   responses=tuple(row.get("responses") or ()),
                   contexts=tuple(row.get("contexts") or ()))


def to_table(model: str, prompts: list[PromptText], source: str) -> pa.Table:
    """The ``prompts`` table rows for one model's prompts."""
    rows = [{"model": model, **p.to_dict(), "source": source} for p in prompts]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def read_prompts(ws: Any, model: str | None = None,
                 benchmark: str | None = None) -> list[PromptText]:
    """Prompt texts stored in workspace ``ws`` (optionally one model's / benchmark's)."""
    out = []
    for row in ws.rows(TABLE):
        if model is not None and row["model"] != model:
            continue
        if benchmark is not None and row["benchmark"] != benchmark:
            continue
        out.append(PromptText.from_dict(row))
    return out
