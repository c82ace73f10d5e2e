"""HumanEval pass@1 through the sandbox, with any backend that can generate.

Generation is the backend's ``generate`` capability (greedy, stop sequences; e.g.
:mod:`quantfid.backends.hf_generate`). HumanEval uses the Codex paper's stop sequences.

pass@1 with one greedy sample per problem: the completion is run against the problem's
tests by :mod:`quantfid.bench.execute` in a separate confined process, never here.
Per-prompt fidelity: the reference's greedy answer teacher-forced through every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantfid._version import __version__
from quantfid.backends.base import require
from quantfid.bench.execute import check_humaneval
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_json
from quantfid.progress import bar
from quantfid.records import Outcome

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
BENCH = "humaneval_gen"


def humaneval_pass_at_1(backend: Any, problems: Sequence[dict[str, Any]], *,
                        benchmark: str = "humaneval_gen", max_tokens: int = 384,
                        timeout_s: float = 10.0, memory_mb: int = 1024,
                        progress: bool = True,
                        completions: list[str] | None = None) -> list[Outcome]:
    """One greedy sample per problem (the backend's ``generate`` capability), executed in the
    sandbox: Outcome rows (pass@1). completions: each problem's text is appended to it."""
    require(backend, "generate")
    rows = []
    pbar = bar(total=len(problems), desc=f"{benchmark} {backend.info.id}", unit="problem",
               disable=None if progress else True)
    texts = backend.generate([p["prompt"] for p in problems], max_tokens=max_tokens,
                             stop=HUMANEVAL_STOP)
    for i, text in texts:
        prob = problems[i]
        res = check_humaneval(prob, text, timeout_s=timeout_s, memory_mb=memory_mb)
        if completions is not None:
            completions.append(text)
        rows.append(Outcome(model=backend.info.id, benchmark=benchmark, prompt_id=prob["task_id"],
                            passed=res.passed, score=float(res.passed), samples=1,
                            source="quantfid", source_version=__version__,
                            prompt_hash=hash_json({"prompt": prob["prompt"]})[:16]))
        pbar.update(1)
    pbar.close()
    return rows


def run_generation(workspace: str | Path, model: str, *, reference: bool = False,
                   name: str | None = None, backend: str | None = None, dtype: str = "float32",
                   device: str = "auto", numerics: str = "auto", limit: int | None = None,
                   timeout: float = 10.0, options: dict[str, Any] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """``quantfid bench --task humaneval_gen``: pass@1 outcomes and each model's completions
    (``prompts`` table), then per-prompt fidelity over the prompt + the *reference's* greedy
    completion, teacher-forced through this model (when the reference's completions exist)."""
    from quantfid.bench.run import _pool_and_target, bench_summary, ingested_prompts, run_units
    from quantfid.bench.tasks.humaneval_mc import load_problems
    from quantfid.ingest.prompts import PromptText, to_table
    from quantfid.models import parse_spec
    from quantfid.store.workspace import Part, Workspace
    from quantfid.units.plan import Settings, plan_units, prompt_set

    if limit is not None and limit < 1:
        raise QuantfidError(f"--limit must be at least 1, got {limit}")
    spec = parse_spec(model, role="reference" if reference else "quant", name=name,
                      backend=backend, dtype=dtype, device=device, numerics=numerics,
                      **(options or {}))
    ws = Workspace(workspace)
    pool, ref, target = _pool_and_target(ws, spec)
    me = target or ref
    problems = load_problems()[:limit] if limit is not None else load_problems()
    unit = hash_json({"v": 3, "model": me.key, "task": BENCH,
                      "ids": [p["task_id"] for p in problems], "timeout": timeout})
    part = f"{BENCH}@{me.id}"
    if not (ws.has_part("outcomes", part, unit) and ws.has_part("prompts", part, unit)):
        texts: list[str] = []
        outs = humaneval_pass_at_1(pool.open(me), problems, timeout_s=timeout, completions=texts,
                                   progress=progress)
        rows = [PromptText(BENCH, p["task_id"], p["prompt"], responses=(t,))
                for p, t in zip(problems, texts, strict=True)]
        ws.commit([Part("prompts", part, to_table(me.id, rows, "quantfid"), unit),
                   Part("outcomes", part, [o.to_dict() for o in outs], unit)], [pool.record(me)])
    got = [o for o in ws.outcomes() if o.model == me.id and o.benchmark == BENCH]
    out = {"model": me.id, "benchmark": BENCH, "n": len(got),
           "acc": sum(o.passed for o in got) / len(got) if got else None, "acc_norm": None,
           "kld_mean": None}
    ref_part = f"{BENCH}@{ref.id}"
    if target is not None and ws.has_part("prompts", ref_part):
        wanted = {p["task_id"] for p in problems}
        prompts = [p for p in ingested_prompts(ws, BENCH) if p.id in wanted]
        ps = prompt_set(pool.reference(), BENCH, prompts, outcomes=False,
                        info={"source": "reference greedy completions"})
        units = plan_units(ref, [target], [], [ps], Settings())
        ran = run_units(ws, pool, units, progress)
        out["kld_mean"] = bench_summary(ws, units[-1], units[-1].hash in ran)["kld_mean"]  # type: ignore[arg-type]
    return out
