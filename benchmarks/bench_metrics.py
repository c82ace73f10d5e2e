"""Speed of the fused metric kernel against a torch baseline, in one process.

Baseline: two torch.log_softmax calls and the KL sum (F.kl_div with log_target), on the same
(chunk, V) float32 arrays with the same number of threads (torch.get_num_threads(); numba is
set to match). Prints tokens/s (median of --repeats runs, with min-max), the ratio, effective
GB/s (bytes of the two input arrays / time) and this machine's memory bandwidth measured with a
large numpy copy (read + write bytes / time). JS and top-k overlap are separate passes, timed
separately. Run: .venv/bin/python benchmarks/bench_metrics.py [--repeats 7] [--chunk 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F

from quantfid.metrics import kernel, token_metrics


def _times(fn: Callable[[], Any], repeats: int) -> list[float]:
    fn()  # warm-up (and numba compilation)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def memory_bandwidth(repeats: int, mib: int = 512) -> list[float]:
    """GB/s of np.copyto over a large float32 array (counts bytes read + bytes written)."""
    src = np.ones(mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    return [2 * src.nbytes / t / 1e9 for t in _times(lambda: np.copyto(dst, src), repeats)]


def bench_vocab(vocab: int, chunk: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ref = (rng.standard_normal((chunk, vocab), dtype=np.float32) * 3)
    quant = ref + rng.standard_normal((chunk, vocab), dtype=np.float32) * np.float32(0.1)
    targets = rng.integers(0, vocab, chunk)
    tr, tq = torch.from_numpy(ref), torch.from_numpy(quant)
    n = chunk
    f64 = [np.empty(n) for _ in range(8)]
    same = np.empty(n, dtype=np.bool_)
    bad = np.zeros(n, dtype=np.int8)

    def baseline() -> None:
        lr = torch.log_softmax(tr, dim=-1)
        lq = torch.log_softmax(tq, dim=-1)
        F.kl_div(lq, lr, log_target=True, reduction="none").sum(dim=-1)

    def fused() -> None:
        kernel.fused_rows(ref, quant, targets, f64[0], f64[1], f64[2], f64[3], f64[4], same,
                          f64[5], f64[6], f64[7], bad)

    def core_api() -> None:
        token_metrics(ref, quant, targets, extras=False, chunk=chunk)

    def js() -> None:
        kernel.js_rows(ref, quant, f64[6], f64[7], f64[0])

    def topk() -> None:
        kernel.topk_overlap_rows(ref, quant, f64[1], f64[2])

    in_bytes = ref.nbytes + quant.nbytes
    out: dict[str, Any] = {"vocab": vocab, "chunk": chunk}
    # interleave the runs so that load from other processes hits both alike
    runs: dict[str, list[float]] = {k: [] for k in ("baseline", "fused", "token_metrics", "js", "topk")}
    fns = {"baseline": baseline, "fused": fused, "token_metrics": core_api, "js": js, "topk": topk}
    for f in fns.values():
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            runs[k].extend(_times(f, 1)[0:1])
    for k, ts in runs.items():
        med = statistics.median(ts)
        out[k] = {"tok_s": n / med, "tok_s_min": n / max(ts), "tok_s_max": n / min(ts),
                  "gb_s": in_bytes / med / 1e9, "ms_per_chunk": med * 1e3}
    out["speedup_fused"] = out["fused"]["tok_s"] / out["baseline"]["tok_s"]
    out["speedup_token_metrics"] = out["token_metrics"]["tok_s"] / out["baseline"]["tok_s"]
    # paired per-repeat ratios: robust to load that changes between repeats
    out["speedup_fused_paired_median"] = statistics.median(
        b / f for b, f in zip(runs["baseline"], runs["fused"], strict=True))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--vocab", type=int, nargs="+", default=[49152, 151936])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    numba.set_num_threads(threads)
    t0 = time.perf_counter()
    token_metrics(np.zeros((2, 8), np.float32), np.zeros((2, 8), np.float32))
    first_call = time.perf_counter() - t0
    bw = memory_bandwidth(args.repeats)
    result: dict[str, Any] = {
        "threads": threads, "numba_threads": numba.get_num_threads(), "repeats": args.repeats,
        "first_call_s": first_call, "memory_bandwidth_gb_s": statistics.median(bw),
        "memory_bandwidth_gb_s_range": [min(bw), max(bw)],
        "vocabs": [bench_vocab(v, args.chunk, args.repeats) for v in args.vocab]}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"threads {threads} (torch and numba); chunk {args.chunk} tokens; median of "
          f"{args.repeats} (min-max tokens/s); first token_metrics call {first_call:.2f} s")
    print(f"memory bandwidth (numpy copy, read+write): {result['memory_bandwidth_gb_s']:.1f} GB/s "
          f"({min(bw):.1f}-{max(bw):.1f})")
    for r in result["vocabs"]:
        print(f"\nV = {r['vocab']}")
        for k in ("baseline", "fused", "token_metrics", "js", "topk"):
            x = r[k]
            print(f"  {k:14s} {x['tok_s']:10.0f} tok/s ({x['tok_s_min']:.0f}-{x['tok_s_max']:.0f})"
                  f"  {x['gb_s']:6.2f} GB/s  {x['ms_per_chunk']:8.2f} ms/chunk")
        print(f"  fused / baseline: {r['speedup_fused']:.2f}x (paired median "
              f"{r['speedup_fused_paired_median']:.2f}x); token_metrics(extras=False) / "
              f"baseline: {r['speedup_token_metrics']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
