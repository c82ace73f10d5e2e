"""Seconds to build each default-cohort quant of the embedded model (quantize in memory).

Run: HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_quantize.py [--recipes default] [--json]

As `quantfid cohort build` does, one working copy of the float32 reference is quantized by
every recipe in turn (reading the reference's weights) with one shared QuantCache; the deep
copy is made once, timed with the first recipe. The total is what
a study pays to build its cohort in memory (writing GGUF files adds the file I/O).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="default")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from quantfid.backends.hf import load_hf
    from quantfid.quantize import QuantCache, model_shape, quantize_model, resolve_recipes

    t0 = time.perf_counter()
    lm = load_hf(None, role="reference")
    t_load = time.perf_counter() - t0
    shape = model_shape(lm.module)
    cache = QuantCache()
    rows = []
    total = 0.0
    work = None
    for recipe in resolve_recipes(args.recipes):
        t = time.perf_counter()
        if work is None:
            work = copy.deepcopy(lm.module)
        rep = quantize_model(work, recipe, cache=cache, reference_hash=lm.info.hash, shape=shape,
                             progress=False, threads=args.threads, source=lm.module)
        dt = time.perf_counter() - t
        total += dt
        rows.append({"recipe": recipe.name, "seconds": round(dt, 2),
                     "bits_per_weight": round(rep.bits_per_weight, 4)})
        print(f"{recipe.name:22s} {rep.bits_per_weight:7.3f} bpw {dt:7.2f} s", file=sys.stderr)
    out = {"model": lm.info.id, "n_recipes": len(rows), "load_seconds": round(t_load, 1),
           "total_seconds": round(total, 1), "cache_hits": cache.hits, "cache_misses": cache.misses,
           "recipes": rows}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"{len(rows)} quants in {total:.1f} s (reference load {t_load:.1f} s; "
              f"cache {cache.hits} hits / {cache.misses} misses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
