"""``quantfid measure``: fidelity of quants against a reference on a calibration corpus."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from quantfid.commands import server_args
from quantfid.commands.argtypes import nonneg_int, positive_int
from quantfid.errors import QuantfidError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure", help="measure quants against a reference on a corpus (KLD, PPL ratio, ...)",
        description="Run the reference once and each quant over a corpus's windows and print "
                    "the fidelity statistics of every quant (the keys of `quantfid stats`).")
    p.add_argument("--reference", default=None, metavar="R",
                   help="reference: a GGUF file, model directory, hub id, a quantfid reference "
                        "store or a llama.cpp kld-base file (default: the embedded model)")
    p.add_argument("--quant", action="append", required=True, metavar="Q",
                   help="a quant: GGUF file, model directory, hub id or cohort recipe name "
                        "(applied to the reference); repeat for several")
    p.add_argument("--corpus", default=None, metavar="C",
                   help="built-in corpus (prose, code, docs), a text file, a directory or "
                        "file.jsonl:field (default: prose; a stored reference brings its own)")
    p.add_argument("--ctx", type=positive_int, default=None, metavar="N",
                   help="context length of each window (default 512)")
    p.add_argument("--chunks", type=positive_int, default=None, metavar="K",
                   help="use only the first K windows")
    p.add_argument("--scoring", choices=("llamacpp", "all"), default="llamacpp",
                   help="llamacpp: score the last n_ctx-1-n_ctx/2 tokens of each window "
                        "(default); all: every token after the first")
    p.add_argument("--backend", choices=("hf", "llamacpp", "http"), default=None,
                   help="runtime for the models (default: hf for files, http for server URLs)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    p.add_argument("--numerics", choices=("auto", "weights", "ggml-cpu"), default="auto",
                   help="torch numerics: ggml-cpu emulates llama.cpp's CPU backend (default for "
                        "GGML recipes and GGUF files), weights is weight-only")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="B",
                   help="windows per forward (prompts per forward for --prompts: 8 if 1)")
    p.add_argument("--store", choices=("compact", "full"), default="compact",
                   help="reference store kind (compact: top-k + tail; full: every log-prob)")
    p.add_argument("--workspace", default=None, metavar="W",
                   help="store everything in workspace W and resume finished units")
    p.add_argument("--name", action="append", default=None, metavar="ID",
                   help="id for the quant at the same position (repeatable)")
    p.add_argument("--reference-name", default=None, metavar="ID", help="id for the reference")
    p.add_argument("--imatrix", default=None, help="importance matrix file for recipes")
    p.add_argument("--n-boot", type=nonneg_int, default=1000,
                   help="bootstrap resamples for the CIs (0: none)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="bootstrap seed")
    p.add_argument("--prompts", default=None, metavar="BENCH|FILE",
                   help="also measure per-prompt fidelity on a built-in task, an ingested "
                        "benchmark of the workspace (lm-eval, LiveCodeBench prompt texts) or a "
                        "JSONL file of {id, prompt, answer?}")
    p.add_argument("--json", action="store_true", help="print a JSON array, one object per quant")
    server_args.add(p)
    p.set_defaults(func=run)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.6g}"
    return str(v)


def format_table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    """A plain text table: one row per quant, ``model`` then ``keys``."""
    cols = ("model", *keys)
    cells = [[_fmt(r.get(k)) for k in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _prompts(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per-prompt fidelity of the workspace's models (``quantfid.bench.run.measure_prompts``)."""
    if args.workspace is None:
        raise QuantfidError("--prompts needs --workspace (per-prompt rows are stored there)")
    from quantfid.bench.run import measure_prompts
    from quantfid.models import parse_spec
    from quantfid.store.workspace import Workspace

    kw = {"backend": args.backend, "dtype": args.dtype, "device": args.device,
          "numerics": args.numerics, **server_args.options(args)}
    names = [*(args.name or []), *[None] * len(args.quant)][:len(args.quant)]
    quants = [parse_spec(q, name=n, **kw) for q, n in zip(args.quant, names, strict=True)]
    ref = parse_spec(args.reference, role="reference", name=args.reference_name, **kw)
    return measure_prompts(Workspace(args.workspace), args.prompts, reference=ref, quants=quants,
                           batch_size=args.batch_size if args.batch_size > 1 else 8,
                           progress=True)


def run(args: argparse.Namespace) -> int:
    from quantfid.measure import is_stored_reference, measure, stats_keys

    if args.ctx is not None and args.ctx < 4:
        raise QuantfidError(f"--ctx must be at least 4 tokens, got {args.ctx}")
    if args.prompts is not None and args.workspace is None:
        raise QuantfidError("--prompts needs --workspace (per-prompt rows are stored there)")
    stored = args.reference is not None and is_stored_reference(args.reference)
    corpus = args.corpus if (args.corpus is not None or stored) else "prose"
    ctx = args.ctx if (args.ctx is not None or stored) else 512
    results = []
    if args.prompts is None or args.corpus is not None or stored:
        results = measure(args.reference, args.quant, corpus, ctx, chunks=args.chunks,
                          scoring=args.scoring, backend=args.backend, dtype=args.dtype,
                          device=args.device, numerics=args.numerics, workspace=args.workspace,
                          names=args.name, reference_name=args.reference_name,
                          batch_size=args.batch_size, store=args.store, n_boot=args.n_boot,
                          seed=args.seed, imatrix=args.imatrix, progress=True,
                          options=server_args.options(args))
    prompt_rows = _prompts(args) if args.prompts is not None else []
    if args.json:
        json.dump([r.to_json() for r in results] if results else prompt_rows, sys.stdout,
                  indent=2, allow_nan=True)
        sys.stdout.write("\n")
        return 0
    if results:
        r0 = results[0]
        print(f"reference {r0.reference}  corpus {r0.corpus} ({r0.corpus_hash[:12]})  "
              f"ctx {r0.ctx}  scoring {r0.scoring}  windows {r0.n_windows}")
        print(format_table([r.to_json() for r in results], stats_keys()))
    if prompt_rows:
        print()
        print(format_table(prompt_rows, ("benchmark", "n", "acc", "acc_norm", "kld_mean",
                                         "skipped")))
    return 0
