"""Prompts/s of choice scoring on the default model: prefix sharing + batching vs the naive
one-forward-per-choice loop, measured in the same run on the same prompts, and their
agreement (max |difference| of the choice log-likelihoods). Weight-only numerics (the
backend protocol's ``loglikelihood`` against ``full_logprobs`` per choice).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_prompts.py [--n 24] [--batch-size 4]
        [--repeats 2] [--threads N] [--json]

Timings are the best of ``--repeats`` runs of each method (alternated, so both see the
same machine load). tokens/prompt: what the shared path processes (context once plus
every choice) and what the naive path processes (context + choice, per choice).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch


def naive_loglik(backend: Any, req: Any) -> np.ndarray:
    """One full forward per choice (context + choice), log-probs by ``full_logprobs``."""
    from quantfid.reducers import full_logprobs

    out = []
    for cont in req.continuations:
        seq = np.concatenate([req.context, cont])[None, :]
        n = len(req.context)
        (lp,) = list(full_logprobs(backend, seq, start=n - 1, stop=seq.shape[1] - 1))
        out.append(float(lp[0, torch.arange(len(cont)), torch.from_numpy(cont)].double().sum()))
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=24, help="prompts per task")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from quantfid.backends.registry import open_backend
    from quantfid.bench.tasks import resolve_tasks
    from quantfid.models import parse_spec
    from quantfid.units.plan import task_prompt_set

    backend: Any = open_backend(parse_spec("embedded", role="reference", numerics="weights"))
    rows: list[dict[str, Any]] = []
    for task in resolve_tasks("all"):
        reqs = list(task_prompt_set(backend, task, limit=args.n).requests)
        t_shared, t_naive = [], []
        shared = naive = None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = dict(backend.loglikelihood(reqs, batch_size=args.batch_size))
            shared = [res[i] for i in range(len(reqs))]
            t_shared.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            naive = [naive_loglik(backend, r) for r in reqs]
            t_naive.append(time.perf_counter() - t0)
        assert shared is not None and naive is not None
        enc = reqs
        diff = max(float(np.abs(a.loglik - b).max()) for a, b in zip(shared, naive, strict=True))
        same_pick = np.mean([a.loglik.argmax() == b.argmax()
                             for a, b in zip(shared, naive, strict=True)])
        rows.append({
            "task": task, "n": len(enc),
            "tokens_per_prompt_shared": float(np.mean([len(e.context) + sum(
                len(c) for c in e.continuations) for e in enc])),
            "tokens_per_prompt_naive": float(np.mean([sum(len(e.context) + len(c) - 1
                                                          for c in e.continuations) for e in enc])),
            "prompts_per_s_shared": len(enc) / min(t_shared),
            "prompts_per_s_naive": len(enc) / min(t_naive),
            "speedup": min(t_naive) / min(t_shared),
            "max_abs_loglik_diff": diff, "same_argmax": float(same_pick)})
        if not args.json:
            print(f"done {task}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
    tot_s = sum(r["n"] / r["prompts_per_s_shared"] for r in rows)
    tot_n = sum(r["n"] / r["prompts_per_s_naive"] for r in rows)
    summary = {"threads": torch.get_num_threads(), "batch_size": args.batch_size,
               "tasks": rows, "overall_speedup": tot_n / tot_s,
               "overall_prompts_per_s_shared": sum(r["n"] for r in rows) / tot_s,
               "overall_prompts_per_s_naive": sum(r["n"] for r in rows) / tot_n}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"torch threads {summary['threads']}, batch size {args.batch_size}")
    print(f"{'task':<14}{'n':>4}{'tok/p shared':>13}{'tok/p naive':>12}{'p/s shared':>11}"
          f"{'p/s naive':>10}{'speedup':>8}{'max|dLL|':>10}")
    for r in rows:
        print(f"{r['task']:<14}{r['n']:>4}{r['tokens_per_prompt_shared']:>13.1f}"
              f"{r['tokens_per_prompt_naive']:>12.1f}{r['prompts_per_s_shared']:>11.2f}"
              f"{r['prompts_per_s_naive']:>10.2f}{r['speedup']:>8.2f}{r['max_abs_loglik_diff']:>10.2e}")
    print(f"overall: {summary['overall_prompts_per_s_shared']:.2f} vs "
          f"{summary['overall_prompts_per_s_naive']:.2f} prompts/s, "
          f"speedup {summary['overall_speedup']:.2f}x")


if __name__ == "__main__":
    main()
