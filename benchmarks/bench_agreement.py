"""Agreement of quantfid's ``ggml-cpu`` numerics with llama.cpp, on every GGML preset.

For each llama.cpp preset recipe that needs no importance matrix on the embedded default
model (``quantfid.quantize.agreement.ggml_presets``: the presets and their ``-pure``
variants), in one process:

- llama.cpp: the float32 reference exported as an F32 GGUF, quantized by llama.cpp itself
  (``llama_model_quantize``, no imatrix) and run by the llama.cpp backend (llama-perplexity's
  numerics: flash attention, f16 KV cache) against the F32 GGUF run the same way;
- quantfid: the recipe of the same name applied to the torch reference in memory, run under
  ``ggml-cpu`` numerics against the torch reference under ``ggml-cpu``; and under ``weights``
  numerics against the plain reference (today's weight-only figure, for context).

Same windows on both sides: the built-in ``prose`` corpus cut by llama.cpp's windowing
(second half of each chunk scored). Columns: mean KLD (nats) on each side, their ratio
(quantfid / llama.cpp; target 0.95-1.05), same top-1 (%) on each side (target: within 0.5
point), the weight-only KLD and its ratio, and whether quantfid's per-tensor types equal
those in llama.cpp's file. ``floor`` is the KLD of quantfid's emulated reference against
llama.cpp's reference (the numerics floor).

``--draws K`` also runs the emulation under K more rounding draws (inputs perturbed by a few
float32 ulps: the two runtimes sum in different orders, and activation rounding turns that
into an independent draw of the rounding noise) and prints the ratio of the emulation's mean
over its draws with the standard deviation the draws alone give a ratio ("draws": mean ±
noise), and the same noise for the top-1 gap ("±", points).

Usage: ``python benchmarks/bench_agreement.py [--ctx 512] [--chunks 8] [--recipes A,B]
[--draws K] [--threads N] [--workdir DIR] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--recipes", default=None, help="comma-separated (default: every preset)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--draws", type=int, default=0,
                    help="extra rounding draws of the emulation per preset, for the noise columns")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from quantfid import corpus, embedded
    from quantfid.backends.hf import load_hf
    from quantfid.quantize import agreement as ag
    from quantfid.quantize import get_recipe, model_shape

    t0 = time.perf_counter()
    lm = load_hf("embedded", device="cpu", role="reference")
    toks = corpus.tokenize(corpus.builtin("prose").text, lm.tokenizer, None)
    win = corpus.make_windows(toks, args.ctx, None, "llamacpp", args.chunks)
    shape = model_shape(lm.module)
    recipes = ([get_recipe(n.strip()) for n in args.recipes.split(",")] if args.recipes
               else ag.ggml_presets(shape))
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        sides = ag.prepare(lm.module, win, Path(tmp), metadata_gguf=embedded.gguf_path(),
                           threads=args.threads)
        rows = []
        for r in recipes:
            rows.append(ag.measure_preset(sides, r, shape, draws=args.draws))
            if not args.json:
                _print_row(rows[-1], header=len(rows) == 1, floor=sides.ref_kld, n=win.n_tokens)
    if args.json:
        print(json.dumps({"ctx": args.ctx, "chunks": len(win), "n_tokens": win.n_tokens,
                          "floor_kld": sides.ref_kld, "seconds": time.perf_counter() - t0,
                          "rows": [dict(_row_json(r)) for r in rows]}, indent=2))
    else:
        bad = [r.recipe for r in rows if not r.ok()]
        print(f"\n{len(rows)} presets, {len(rows) - len(bad)} within 0.95-1.05 and 0.5 point"
              + (f"; outside: {', '.join(bad)}" if bad else "")
              + f"; {time.perf_counter() - t0:.0f} s")


def _row_json(r: object) -> dict[str, object]:
    from dataclasses import asdict

    d = asdict(r)  # type: ignore[call-overload]
    d["ratio"] = r.ratio  # type: ignore[attr-defined]
    d["ratio_noise"] = r.ratio_noise  # type: ignore[attr-defined]
    d["top1_noise_points"] = r.top1_noise_points  # type: ignore[attr-defined]
    return d


def _print_row(r: object, header: bool, floor: float, n: int) -> None:
    from quantfid.quantize.agreement import AgreementRow

    assert isinstance(r, AgreementRow)
    if header:
        print(f"{n} scored tokens; reference floor KLD (emulated vs llama.cpp F32) {floor:.3g}")
        print(f"{'preset':<12} {'KLD llama.cpp':>13} {'KLD ggml-cpu':>12} {'ratio':>6} "
              f"{'draws':>11} {'top1 lcpp %':>11} {'top1 emu %':>10} {'±':>5} "
              f"{'KLD weights':>11} {'w ratio':>7} types")
    kw = "" if r.kld_weights is None else f"{r.kld_weights:11.6f} {r.kld_weights / r.kld_llamacpp:7.3f}"
    rn = "" if r.ratio_noise is None else f"{r.ratio_over_draws:.3f}±{r.ratio_noise:.3f}"
    tn = "" if r.top1_noise_points is None else f"{r.top1_noise_points:.2f}"
    print(f"{r.recipe:<12} {r.kld_llamacpp:13.6f} {r.kld_emulated:12.6f} {r.ratio:6.3f} {rn:>11} "
          f"{100 * r.same_top1_llamacpp:11.2f} {100 * r.same_top1_emulated:10.2f} {tn:>5} {kw} "
          f"{'same' if not r.type_diff else 'DIFF ' + r.type_diff[0]}", flush=True)


if __name__ == "__main__":
    main()
