"""``quantfid bench``: run built-in benchmarks on one model into a workspace.

``quantfid bench --model M [--reference] --task T [--limit N] [--full] --workspace W [--json]``

M: ``embedded`` (default), a GGUF file, a model directory, a hub id, or a cohort recipe
name (applied to a copy of the workspace's reference). T: ``all`` (default: humaneval_mc,
arith_mc, cloze), comma-separated task names, or ``humaneval_gen`` (greedy generation
executed in the sandbox, pass@1; for models big enough to write code). Prints accuracy
per benchmark (``acc`` and ``acc_norm``) and, for quants, the mean per-prompt KLD.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

GEN_TASKS = ("humaneval_gen",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run built-in benchmarks (per-prompt outcomes and fidelity)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded",
                   help="embedded, a GGUF file, a model directory, a hub id, or a recipe name")
    p.add_argument("--reference", action="store_true", help="this model is the workspace reference")
    p.add_argument("--name", help="model id in the workspace (default: derived from --model)")
    p.add_argument("--task", default="all", help="all, comma-separated tasks, or humaneval_gen")
    p.add_argument("--limit", type=int, help="first N prompts of each task")
    p.add_argument("--full", action="store_true", help="the full prompt sets (>= 600 prompts)")
    p.add_argument("--workspace", required=True, help="workspace directory")
    p.add_argument("--batch-size", type=int, default=4, help="prompts per forward batch")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program (humaneval_gen)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=run)


def _is_recipe(spec: str) -> bool:
    from pathlib import Path

    from quantfid.errors import QuantfidError
    from quantfid.quantize import get_recipe

    if spec in ("embedded",) or Path(spec).exists() or "/" in spec:
        return False
    try:
        get_recipe(spec)
    except QuantfidError:
        return False
    return True


def _load(args: argparse.Namespace, ws: Any) -> Any:
    import copy

    from quantfid.backends.base import LoadedModel
    from quantfid.backends.hf import load_hf
    from quantfid.bench.prompt_fidelity import load_workspace_model
    from quantfid.errors import QuantfidError
    from quantfid.records import Model, Role

    role: Role = "reference" if args.reference else "quant"
    if not _is_recipe(args.model):
        return load_hf(args.model, dtype=args.dtype, device=args.device, role=role,
                       name=args.name)
    if args.reference:
        raise QuantfidError(f"{args.model} is a recipe: a recipe quant cannot be the reference")
    from quantfid.quantize import get_recipe, quantize_model

    recipe = get_recipe(args.model)
    ref = load_workspace_model(ws, ws.require_reference(), dtype=args.dtype, device=args.device)
    module = copy.deepcopy(ref.module)
    report = quantize_model(module, recipe, reference_hash=ref.info.hash)
    info = Model(id=args.name or recipe.name, role="quant",
                 source=f"recipe:{recipe.name}@{ref.info.id}", format="recipe",
                 scheme=recipe.name, bits_per_weight=report.bits_per_weight,
                 bytes=report.bytes, hash=report.hash)
    return LoadedModel(module=module, tokenizer=ref.tokenizer, info=info, device=ref.device,
                       dtype=ref.dtype)


def _generation(ws: Any, lm: Any, limit: int | None, timeout: float) -> dict[str, Any]:
    """humaneval_gen: pass@1 outcomes, the model's completions (``prompts`` table), and
    per-prompt fidelity over the prompt + the *reference's* greedy completion, teacher-forced
    through this model (the reference must run first)."""
    from quantfid.bench.generate import humaneval_pass_at_1
    from quantfid.bench.prompt_fidelity import evaluate, ingested_prompts, model_key
    from quantfid.bench.tasks.humaneval_mc import load_problems
    from quantfid.hashing import hash_json
    from quantfid.ingest.prompts import PromptText, to_table

    bench = "humaneval_gen"
    problems = load_problems()[:limit] if limit is not None else load_problems()
    if lm.info.id not in ws.manifest["models"]:
        ws.add_model(lm.info)
    unit = hash_json({"v": 2, "model": model_key(lm.info), "task": bench,
                      "ids": [p["task_id"] for p in problems], "timeout": timeout})
    part = f"{bench}@{lm.info.id}"
    if not (ws.has_part("outcomes", part, unit) and ws.has_part("prompts", part, unit)):
        texts: list[str] = []
        outs = humaneval_pass_at_1(lm, problems, timeout_s=timeout, completions=texts)
        rows = [PromptText(bench, p["task_id"], p["prompt"], responses=(t,))
                for p, t in zip(problems, texts, strict=True)]
        ws.write_part("prompts", part, to_table(lm.info.id, rows, "quantfid"), unit)
        ws.add_outcomes(part, outs, unit)
    ref = ws.reference
    kld = None
    if ref is not None and ws.has_part("prompts", f"{bench}@{ref.id}"):
        wanted = {p["task_id"] for p in problems}
        prompts = [p for p in ingested_prompts(ws, bench) if p.id in wanted]
        kld = evaluate(ws, lm, bench, prompts, outcomes=False).kld_mean
    got = [o for o in ws.outcomes() if o.model == lm.info.id and o.benchmark == bench]
    return {"model": lm.info.id, "benchmark": bench, "n": len(got),
            "acc": sum(o.passed for o in got) / len(got) if got else None, "acc_norm": None,
            "kld_mean": kld}


def run(args: argparse.Namespace) -> int:
    from quantfid.bench.run import run_tasks
    from quantfid.bench.tasks import resolve_tasks
    from quantfid.store.workspace import Workspace

    names = [t.strip() for t in args.task.split(",")]
    gen = [t for t in names if t in GEN_TASKS]
    ll = resolve_tasks([t for t in names if t not in GEN_TASKS]) if len(gen) < len(names) else []
    ws = Workspace(args.workspace)
    lm = _load(args, ws)
    out: list[dict[str, Any]] = [r.to_json() for r in run_tasks(
        ws, lm, ll, full=args.full, limit=args.limit, batch_size=args.batch_size)] if ll else []
    out += [_generation(ws, lm, args.limit, args.timeout) for _ in gen]
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'model':<28} {'benchmark':<14} {'n':>4} {'acc':>6} {'acc_norm':>8} "
          f"{'kld_mean':>9} {'tok/prompt':>10}")
    for r in out:
        def f(v: Any, w: int, p: int) -> str:
            return f"{v:>{w}.{p}f}" if isinstance(v, float) else f"{'-':>{w}}"
        print(f"{r['model']:<28} {r['benchmark']:<14} {r['n']:>4} {f(r['acc'], 6, 3)} "
              f"{f(r['acc_norm'], 8, 3)} {f(r['kld_mean'], 9, 5)} "
              f"{f(r.get('tokens_per_prompt'), 10, 1)}")
    return 0
