"""Forward throughput of quantfid's HF backend vs a plain ``model(input_ids)`` loop.

Measures, on the embedded default model (SmolLM2-135M, float32 unless noted), side by side
in one process and interleaved (so machine load affects both alike):

- plain: ``model(input_ids=w).logits`` per window under ``torch.inference_mode`` (logits for
  every position, no log-softmax) -- the baseline the issue asks for;
- backend: ``HFBackend.logprobs`` over the scored positions (llama.cpp scoring), float32
  log-softmax included; goal: within 1.5x of plain (it is usually faster: the LM head only
  runs on the scored half);
- measure: the whole per-quant pipeline of ``quantfid.measure`` (forward, comparison against
  the stored reference, streaming statistics, per-token rows); its non-forward share is
  reported (goal <= 10 % of forward time);
- bfloat16: the same backend with the model in bfloat16, its speed and its noise floor:
  the KLD of the bf16 reference against the f32 one on the same windows.

Usage: ``python benchmarks/bench_forward.py [--ctx 512 2048] [--tokens 1536] [--repeats 3]``
(windows per context = max(1, tokens // ctx)).
Prints one JSON object (medians over repeats, tokens/s = input tokens per second).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_ctx(ref: Any, bf16: Any, tokens: np.ndarray, n_ctx: int, n_windows: int,
              repeats: int) -> dict[str, Any]:
    from quantfid.corpus import make_windows
    from quantfid.reducers import full_logprobs

    w = make_windows(tokens, n_ctx, ref.bos_id(), max_chunks=n_windows)
    ids = w.ids
    x = torch.from_numpy(ids)
    n_tok = ids.size

    def plain() -> None:
        with torch.inference_mode():
            for i in range(len(ids)):
                ref.module(input_ids=x[i:i + 1]).logits  # noqa: B018

    def ours(backend: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in full_logprobs(backend, ids, start=w.first, stop=n_ctx - 1):
                pass
        return run

    def ours_all() -> None:
        for _ in full_logprobs(ref, ids):
            pass

    plain(), ours(ref)()  # warm-up
    t_plain, t_ours, t_all = [], [], []
    for _ in range(repeats):  # interleaved so load drifts hit both
        t_plain.append(_median_time(plain, 1))
        t_ours.append(_median_time(ours(ref), 1))
        t_all.append(_median_time(ours_all, 1))
    t_bf = _median_time(ours(bf16), repeats)

    kld = []
    for lp32, lp16 in zip(full_logprobs(ref, ids, start=w.first, stop=n_ctx - 1),
                          full_logprobs(bf16, ids, start=w.first, stop=n_ctx - 1), strict=True):
        p = lp32.double()
        kld.append((p.exp() * (p - lp16.double())).sum(-1).flatten())
        same = (lp32.argmax(-1) == lp16.argmax(-1)).double().mean()
    k = torch.cat(kld).numpy()
    tp, to, ta = (statistics.median(t) for t in (t_plain, t_ours, t_all))
    return {
        "ctx": n_ctx, "windows": len(ids), "tokens": n_tok,
        "plain_tok_s": n_tok / tp, "backend_tok_s": n_tok / to,
        "backend_all_positions_tok_s": n_tok / ta, "backend_over_plain_time": to / tp,
        "bf16_tok_s": n_tok / t_bf, "bf16_speedup": to / t_bf,
        "bf16_kld_mean": float(k.mean()), "bf16_kld_p99": float(np.quantile(k, 0.99)),
        "bf16_kld_max": float(k.max()), "bf16_same_top1_last_window": float(same),
    }


def bench_measure(n_ctx: int, n_windows: int) -> dict[str, Any]:
    """Non-forward overhead of the measure pipeline (reference store + comparison)."""
    from quantfid.measure import measure

    res = measure(None, ["Q8_0"], "prose", n_ctx, chunks=n_windows, progress=False)
    t = res[0].timing
    return {"ctx": n_ctx, "windows": n_windows, **t,
            "other_over_forward": t["other_s"] / t["forward_s"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ctx", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--tokens", type=int, default=1536, help="input tokens per context")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-measure", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from quantfid.backends.hf import HFBackend
    from quantfid.corpus import builtin

    t0 = time.perf_counter()
    ref = HFBackend.load(None, dtype="float32", role="reference")
    load_s = time.perf_counter() - t0
    bf16 = HFBackend.load(None, dtype="bfloat16", role="reference")
    tokens = ref.tokenize(builtin("prose").text)
    out: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                           "load_s": load_s, "corpus_tokens": len(tokens), "results": []}
    for n_ctx in args.ctx:
        n_win = max(1, args.tokens // n_ctx)
        out["results"].append(bench_ctx(ref, bf16, tokens, n_ctx, n_win, args.repeats))
        print(json.dumps(out["results"][-1]), file=sys.stderr)
    if not args.skip_measure:
        del bf16
        out["measure"] = [bench_measure(n_ctx, max(1, args.tokens // n_ctx)) for n_ctx in args.ctx]
        for m in out["measure"]:
            print(json.dumps(m), file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
