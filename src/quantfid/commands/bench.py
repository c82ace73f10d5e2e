"""``quantfid bench``: run built-in benchmarks on one model into a workspace.

``quantfid bench --model M [--reference] --task T [--limit N] [--full] --workspace W [--json]``

M: ``embedded`` (default), a GGUF file, a model directory, a hub id, a server URL, or a
cohort recipe name (applied to the workspace's reference). T: ``all`` (default: humaneval_mc,
arith_mc, cloze), comma-separated task names, or ``humaneval_gen`` (greedy generation
executed in the sandbox, pass@1; for models big enough to write code). Prints accuracy
per benchmark (``acc`` and ``acc_norm``) and, for quants, the mean per-prompt KLD.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from quantfid.commands import server_args
from quantfid.commands.argtypes import positive_int

GEN_TASKS = ("humaneval_gen",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run built-in benchmarks (per-prompt outcomes and fidelity)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="embedded",
                   help="embedded, a GGUF file, a model directory, a hub id, a server URL, or a "
                        "recipe name")
    p.add_argument("--reference", action="store_true", help="this model is the workspace reference")
    p.add_argument("--name", help="model id in the workspace (default: derived from --model)")
    p.add_argument("--task", default="all", help="all, comma-separated tasks, or humaneval_gen")
    p.add_argument("--limit", type=positive_int, help="first N prompts of each task")
    p.add_argument("--full", action="store_true", help="the full prompt sets (>= 600 prompts)")
    p.add_argument("--workspace", required=True, help="workspace directory")
    p.add_argument("--batch-size", type=positive_int, default=8, help="prompts per forward batch")
    p.add_argument("--backend", default=None, choices=["hf", "llamacpp", "http"],
                   help="runtime (default: hf for files, http for URLs)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument("--numerics", default="auto", choices=["auto", "weights", "ggml-cpu"],
                   help="auto: llama.cpp's CPU numerics for GGML types, weight-only otherwise")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per program (humaneval_gen)")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    server_args.add(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantfid.bench.tasks import resolve_tasks
    from quantfid.errors import QuantfidError

    names = [t.strip() for t in args.task.split(",")]
    gen = [t for t in names if t in GEN_TASKS]
    ll = [t for t in names if t not in GEN_TASKS]
    if ll:
        resolve_tasks(ll)  # unknown task names fail before anything runs
    if args.limit is not None and args.limit < 1:
        raise QuantfidError(f"--limit must be at least 1, got {args.limit}")
    common = {"reference": args.reference, "name": args.name, "backend": args.backend,
              "dtype": args.dtype, "device": args.device, "numerics": args.numerics,
              "options": server_args.options(args)}
    out: list[dict[str, Any]] = []
    if ll:
        from quantfid.bench.run import run_tasks

        out += run_tasks(args.workspace, args.model, tasks=ll, full=args.full, limit=args.limit,
                         batch_size=args.batch_size, **common)
    if gen:
        from quantfid.bench.generate import run_generation

        out.append(run_generation(args.workspace, args.model, limit=args.limit,
                                  timeout=args.timeout, **common))
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
