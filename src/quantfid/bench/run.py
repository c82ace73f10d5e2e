"""``quantfid bench`` and ``quantfid measure --prompts``: benchmark units for workspace models.

Both plan :class:`quantfid.units.BenchUnit` s, the same units the study runs (same parts,
columns and hashes): a unit done by one command is skipped by the others. A quant's unit
needs the reference's (its prompt store); when that is missing it is run first, reopening
the workspace's reference the way it was recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.models import ModelRef, ModelSpec, parse_spec, spec_from_record
from quantfid.pool import ModelPool
from quantfid.store.workspace import Workspace
from quantfid.units import BenchUnit, PromptSet, Unit
from quantfid.units.plan import Settings, plan_units, prompt_set, task_prompt_set


def _pool_and_target(ws: Workspace, spec: ModelSpec) -> tuple[ModelPool, ModelRef, ModelRef | None]:
    """The pool (on the workspace's reference), the reference's identity and the target's
    (None when the target is the reference)."""
    cur = ws.reference
    if spec.role == "reference":
        if cur is not None and cur.id != spec.id:
            raise MismatchError(f"workspace {ws.path} already has reference {cur.id!r}; refusing "
                                f"to add {spec.id!r} as another (use a new workspace)")
        pool = ModelPool(spec)
        return pool, pool.ref_ref(), None
    if cur is None:
        raise QuantfidError(f"workspace {ws.path} has no reference model yet: run "
                            "`quantfid bench --reference --model REF` (or measure) first")
    if spec.id == cur.id:
        raise MismatchError(f"{spec.id!r} is this workspace's reference; add --reference")
    pool = ModelPool(spec_from_record(cur))
    ref = pool.ref_ref()
    target = pool.ref_of(spec)
    if target.identity.numerics == "ggml-cpu" and ref.identity.numerics != "ggml-cpu":
        raise MismatchError(f"{spec.id} runs under ggml-cpu numerics but the workspace's "
                            f"reference ran under {ref.identity.numerics}: pass --numerics weights")
    return pool, ref, target


def run_units(ws: Workspace, pool: ModelPool, units: Sequence[Unit], progress: bool) -> set[str]:
    """Run the units not done yet (locally); returns the hashes of those that ran."""
    from quantfid.executors import run_local

    return run_local(ws, pool, units, progress)


def bench_summary(ws: Workspace, unit: BenchUnit, ran: bool) -> dict[str, Any]:
    """Accuracy (``acc``, ``acc_norm``) and mean per-prompt KLD of a finished unit."""
    import pyarrow.parquet as pq

    def rows(table: str) -> list[dict[str, Any]]:
        p = ws.path / "tables" / table / f"{unit.part}.parquet"
        return pq.read_table(p).to_pylist() if p.exists() else []

    outs = rows("outcomes")
    b = unit.ps.benchmark
    acc = [o["passed"] for o in outs if o["benchmark"] == b]
    norm = [o["passed"] for o in outs if o["benchmark"] == f"{b}:acc_norm"]
    kld = [r["kld_mean"] for r in rows("prompt_fidelity")]
    return {"model": unit.model.id, "benchmark": b, "n": len(unit.ps.requests),
            "acc": float(np.mean(acc)) if acc else None,
            "acc_norm": float(np.mean(norm)) if norm else None,
            "kld_mean": float(np.mean(kld)) if kld else None,
            "tokens_per_prompt": unit.ps.forward_tokens / max(len(unit.ps.requests), 1),
            "skipped": not ran}


def run_tasks(workspace: str | Path, model: str, *, reference: bool = False,
              tasks: str | Sequence[str] = "all", full: bool = False, limit: int | None = None,
              batch_size: int = 8, name: str | None = None, backend: str | None = None,
              dtype: str = "float32", device: str = "auto", numerics: str = "auto",
              options: dict[str, Any] | None = None,
              progress: bool = True) -> list[dict[str, Any]]:
    """Built-in tasks on one model into a workspace (``quantfid bench``); returns one summary
    per task. The reference's units run first when they are missing. ``options``: backend
    options (a server's dialect, top-K, ...)."""
    from quantfid.bench.tasks import resolve_tasks

    names = resolve_tasks(tasks if isinstance(tasks, str) else list(tasks))
    if limit is not None and limit < 1:
        raise QuantfidError(f"--limit must be at least 1, got {limit}")
    if batch_size < 1:
        raise QuantfidError(f"--batch-size must be at least 1, got {batch_size}")
    spec = parse_spec(model, role="reference" if reference else "quant", name=name,
                      backend=backend, dtype=dtype, device=device, numerics=numerics,
                      **(options or {}))
    ws = Workspace(workspace)
    pool, ref, target = _pool_and_target(ws, spec)
    psets = [task_prompt_set(pool.reference(), t, limit=limit, full=full) for t in names]
    units = plan_units(ref, [target] if target else [], [], psets,
                       Settings(prompt_batch=batch_size))
    ran = run_units(ws, pool, units, progress)
    mine = [u for u in units if isinstance(u, BenchUnit) and u.model.id == spec.id]
    return [bench_summary(ws, u, u.hash in ran) for u in mine]


# ---- measure --prompts -----------------------------------------------------------------------
def read_prompts_jsonl(path: str | Path) -> list[Any]:
    """``{"id", "prompt", optional "answer"}`` per line -> prompts (answer = one choice)."""
    from quantfid.bench.types import ChoicePrompt, TextPrompt

    p = Path(path)
    if not p.is_file():
        raise QuantfidError(f"prompts file not found: {p}")
    from quantfid.ingest.common import iter_jsonl

    out: list[Any] = []
    for n, row in iter_jsonl(p):
        if not isinstance(row.get("prompt"), str) or "id" not in row:
            raise FormatError(f"{p}:{n}: expected an object with 'id' and a string 'prompt'")
        pid, answer = str(row["id"]), row.get("answer")
        if answer is None:
            out.append(TextPrompt(pid, row["prompt"]))
        elif isinstance(answer, str) and answer:
            out.append(ChoicePrompt(pid, row["prompt"], (answer,), 0))
        else:
            raise FormatError(f"{p}:{n}: 'answer' must be a non-empty string")
    if not out:
        raise FormatError(f"{p}: no prompts")
    return out


def ingested_prompts(ws: Workspace, benchmark: str) -> list[Any]:
    """Prompts of an ingested benchmark (the workspace ``prompts`` table), as scored tokens.

    The text comes from the reference's rows (else the first model that has them). The
    answer teacher-forced after the prompt, the same for every model: the gold
    continuation (log-likelihood tasks), else the logged target, else the reference's own
    first response (generation tasks such as LiveCodeBench's ``code_list``), else none.
    """
    from quantfid.bench.types import ChoicePrompt, TextPrompt
    from quantfid.ingest.prompts import read_prompts

    rows = read_prompts(ws, benchmark=benchmark)
    if not rows:
        return []
    ref = ws.reference
    ref_rows = read_prompts(ws, model=ref.id, benchmark=benchmark) if ref else []
    out: list[Any] = []
    seen: set[str] = set()
    for r in ref_rows or rows:
        if r.prompt_id in seen:
            continue
        seen.add(r.prompt_id)
        answer = (r.continuations[r.gold] if r.gold is not None and r.gold < len(r.continuations)
                  else r.target or (r.responses[0] if r.responses else None))
        out.append(ChoicePrompt(r.prompt_id, r.prompt, (answer,), 0) if answer
                   else TextPrompt(r.prompt_id, r.prompt))
    return out


def _prompt_sets(ws: Workspace, pool: ModelPool, source: str, name: str | None, full: bool,
                 limit: int | None) -> list[PromptSet]:
    from quantfid.bench.tasks import TASKS, resolve_tasks

    backend = pool.reference()
    if Path(source).suffix == ".jsonl" or Path(source).is_file():
        return [prompt_set(backend, name or Path(source).stem, read_prompts_jsonl(source),
                           outcomes=False, info={"source": str(source)})]
    if source in ("all", "default") or all(s.strip() in TASKS for s in source.split(",")):
        return [task_prompt_set(backend, t, limit=limit, full=full)
                for t in resolve_tasks(source)]
    ingested = ingested_prompts(ws, source)
    if ingested:
        return [prompt_set(backend, source, ingested, outcomes=False,
                           info={"source": f"ingested:{source}"})]
    raise QuantfidError(f"--prompts {source!r}: not a JSONL file, a built-in task "
                        f"({', '.join(TASKS)}) nor an ingested benchmark of {ws.path}")


def measure_prompts(ws: Workspace, source: str, *, reference: ModelSpec | None = None,
                    quants: Sequence[ModelSpec] | None = None, name: str | None = None,
                    full: bool = False, limit: int | None = None, batch_size: int = 8,
                    progress: bool = True) -> list[dict[str, Any]]:
    """``quantfid measure --prompts BENCH|FILE.jsonl``: the reference, then ``quants`` (None:
    every runnable quant of the workspace; models known only from ingested files are
    skipped, said on stderr), over the prompts; per-prompt fidelity (and outcomes for
    built-in tasks). ``reference``: the workspace's when it has one (another is an error)."""
    import sys

    cur = ws.reference
    if cur is not None:
        if reference is not None and reference.kind != "embedded" and reference.id != cur.id:
            raise MismatchError(f"workspace {ws.path} has reference {cur.id!r}, not "
                                f"{reference.id!r}")
        reference = spec_from_record(cur)
    pool = ModelPool(reference or parse_spec(None, role="reference"))
    ref = pool.ref_ref()
    refs: list[ModelRef] = []
    if quants is None:
        for m in ws.models("quant"):
            try:
                refs.append(pool.ref_of(spec_from_record(m)))
            except QuantfidError as e:
                print(f"quantfid: skipping {m.id}: {e}", file=sys.stderr)
    else:
        refs = [pool.ref_of(q) for q in quants]
    quants_r = refs
    psets = _prompt_sets(ws, pool, source, name, full, limit)
    units = plan_units(ref, quants_r, [], psets, Settings(prompt_batch=batch_size))
    ran = run_units(ws, pool, units, progress)
    return [bench_summary(ws, u, u.hash in ran) for u in units if isinstance(u, BenchUnit)]
