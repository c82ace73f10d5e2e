"""Host-bound bytes per token: reducing on the device (``quantfid.metrics.device``) vs copying
full log-prob rows to the host.

Before: the backend copied each scored position's float32 log-probs to the host (4 V bytes
per token), for the reference (then written to a store) and for every quant (then compared).
After: the reduction runs where the logits live and only its result crosses: the reference's
compact rows (``compact_rows_torch``) or a quant's per-token metrics against the compact or
the full reference (``compact_metrics_torch``, ``full_metrics_torch``). The bytes are those
of the tensors the functions copy to the host (``HostResult.nbytes``). This runs the torch
code on CPU tensors (the code path CUDA runs; ``--device cuda`` where one exists), on
bfloat16 logits whose rows are as flat as SmolLM2's (the cap of 256 kept ids binds).

    python benchmarks/bench_device.py [--positions 128] [--vocab 49152 151936] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from quantfid.metrics import device
from quantfid.store.compact import DEFAULT_CAP, DEFAULT_MASS, DEFAULT_MIN_K, DEFAULT_TAIL_SAMPLES
from quantfid.store.rows import CompactRows


def run(vocab: int, n: int, dev: str, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ref = torch.from_numpy(rng.standard_normal((n, vocab), dtype=np.float32) * 2.0)
    quant = ref + 0.05 * torch.from_numpy(rng.standard_normal((n, vocab), dtype=np.float32))
    ref, quant = ref.to(dev, torch.bfloat16), quant.to(dev, torch.bfloat16)  # (P, V)
    targets = rng.integers(0, vocab, n)
    t0 = time.perf_counter()
    rows = device.compact_rows_torch(ref, targets, mass=DEFAULT_MASS, cap=DEFAULT_CAP,
                                     min_k=DEFAULT_MIN_K, tail_samples=DEFAULT_TAIL_SAMPLES,
                                     rng=np.random.default_rng(0))
    t1 = time.perf_counter()
    comp = device.compact_metrics_torch(CompactRows(**rows.arrays), quant, targets)
    t2 = time.perf_counter()
    full = device.full_metrics_torch(ref.float().cpu().numpy(), quant, targets)
    t3 = time.perf_counter()
    before = 4 * vocab  # float32 log-probs of one position
    out: dict[str, Any] = {"vocab": vocab, "positions": n, "device": dev,
                           "before_bytes_per_token": before,
                           "mean_kept_ids": float(np.mean(rows.arrays["counts"]))}
    for name, res, secs in (("reference_compact_rows", rows, t1 - t0),
                            ("quant_vs_compact_metrics", comp, t2 - t1),
                            ("quant_vs_full_metrics", full, t3 - t2)):
        per_tok = res.nbytes / n
        out[name] = {"after_bytes_per_token": per_tok, "reduction_x": before / per_tok,
                     "tok_s_this_device": n / secs}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=128)
    ap.add_argument("--vocab", type=int, nargs="+", default=[49152, 151936])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    res = [run(v, args.positions, args.device) for v in args.vocab]
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for r in res:
        print(f"V = {r['vocab']} ({r['positions']} positions, {r['device']}, bfloat16 logits, "
              f"mean kept ids {r['mean_kept_ids']:.0f}); before: {r['before_bytes_per_token']:,}"
              " bytes/token (float32 log-prob rows to the host)")
        for k in ("reference_compact_rows", "quant_vs_compact_metrics", "quant_vs_full_metrics"):
            x = r[k]
            print(f"  {k:26s} after {x['after_bytes_per_token']:9,.0f} bytes/token  "
                  f"{x['reduction_x']:8,.0f}x fewer  ({x['tok_s_this_device']:,.0f} tok/s here)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
