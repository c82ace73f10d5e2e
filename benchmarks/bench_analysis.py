"""Speed of the whole cohort analysis (issue 5): 41 quants x 2,000 prompts, 10,000 resamples.

Builds a synthetic workspace (``quantfid.analysis.synthetic``, "volume" kind: 41 quants,
2,000 prompts over 4 benchmarks, 15 fidelity stats on one corpus + the per-prompt KLD
variant = 16 measurement variants), then times ``run_all(ws, n_boot=10000)`` end to end
(reading the workspace included) ``--repeat`` times and prints the median and each run.
Goal: < 10 s.

    .venv/bin/python benchmarks/bench_analysis.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np

from quantfid.analysis import make_cohort, run_all
from quantfid.store.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quants", type=int, default=41)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--n-boot", type=int, default=10000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        ws = Workspace(d)
        make_cohort(np.random.default_rng(0), n_quants=a.quants, n_prompts=a.prompts).write(ws)
        times = []
        for i in range(a.repeat):
            t0 = time.perf_counter()
            res = run_all(ws, n_boot=a.n_boot, rng=np.random.default_rng(i))
            times.append(time.perf_counter() - t0)
        j = res.to_json()
        out = {"quants": a.quants, "prompts": a.prompts, "variants": len(j["cohort"]["variants"]),
               "n_boot": a.n_boot, "correlations": len(j["correlations"]),
               "router_pairs": len(j["router"]["pairs"]), "seconds": times,
               "median_s": statistics.median(times), "goal_s": 10.0}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"run_all: {out['quants']} quants x {out['variants']} variants x {out['prompts']} prompts, "
              f"{out['n_boot']} resamples, {out['correlations']} correlations, "
              f"{out['router_pairs']} router pairs")
        print(f"median {out['median_s']:.2f} s over {a.repeat} runs "
              f"({', '.join(f'{t:.2f}' for t in times)}); goal < 10 s")


if __name__ == "__main__":
    main()
