"""Cost of ``ggml-cpu`` numerics against the weight-only forward, same run.

On the embedded default model (SmolLM2-135M, float32), a GGML recipe (default Q4_K_M: q8_0
activations for its 32-block fallback types, q8_K for ffn_down) is applied once; then the same windows run
interleaved, repeat after repeat, under ``weights`` (no hooks), ``ggml-cpu`` (activation
rounding per linear + f16 K/V) and ``ggml-cpu`` on the float reference (f16 K/V only), so
machine load affects all alike. The forward is the scoring forward (LM head on the scored
half of each window, as llama.cpp's windowing scores it). Goal: ggml-cpu <= 1.1x weights.

Usage: ``python benchmarks/bench_numerics.py [--recipe Q4_K_M] [--ctx 512] [--windows 1]
[--repeats 9] [--threads N]``. Prints one JSON object (medians; ratios against weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="Q4_K_M")
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from quantfid import corpus
    from quantfid.backends.hf import load_hf
    from quantfid.quantize import get_recipe, quantize_model
    from quantfid.quantize.numerics import apply_numerics

    lm = load_hf("embedded", device="cpu", role="reference")
    ref = lm.module
    toks = corpus.tokenize(corpus.builtin("prose").text, lm.tokenizer, None)
    w = corpus.make_windows(toks, args.ctx, None, "llamacpp", args.windows)
    x = torch.from_numpy(w.ids)
    keep = torch.arange(w.first, w.n_ctx - 1)
    import copy

    quant = copy.deepcopy(ref)
    rep = quantize_model(quant, get_recipe(args.recipe), progress=False)

    def forward(m: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                for i in range(len(x)):
                    m(input_ids=x[i:i + 1], use_cache=False, logits_to_keep=keep)
        return run

    def under(m: torch.nn.Module, types: dict[str, str] | None, numerics: str) -> float:
        with apply_numerics(m, types, numerics):
            t0 = time.perf_counter()
            forward(m)()
            return time.perf_counter() - t0

    cases = {"weights": lambda: under(quant, rep.types, "weights"),
             "ggml_cpu": lambda: under(quant, rep.types, "ggml-cpu"),
             "reference_ggml_cpu": lambda: under(ref, None, "ggml-cpu"),
             "reference_weights": lambda: under(ref, None, "weights")}
    for fn in cases.values():       # warm-up, not timed
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, fn in cases.items():
            times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    n_tok = int(np.prod(w.ids.shape))
    print(json.dumps({
        "cpu": _cpu_name(), "threads": torch.get_num_threads(), "recipe": args.recipe,
        "ctx": args.ctx, "windows": len(w), "repeats": args.repeats,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "tokens_per_s": {k: round(n_tok / v, 1) for k, v in med.items()},
        "ratio_ggml_cpu_vs_weights": round(med["ggml_cpu"] / med["weights"], 4),
        "ratio_reference_ggml_cpu_vs_weights": round(
            med["reference_ggml_cpu"] / med["reference_weights"], 4),
        "goal": "ratio_ggml_cpu_vs_weights <= 1.1",
    }, indent=2))


if __name__ == "__main__":
    main()
