"""``quantfid cohort``: list recipes, compute an importance matrix, build a cohort of quants."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from quantfid.errors import QuantfidError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cohort", help="build a cohort of quants from a reference (GGML types, RTN, mixes)")
    csub = p.add_subparsers(dest="cohort_command", metavar="ACTION")

    pl = csub.add_parser("list", help="the recipes, with bits per weight on a reference")
    pl.add_argument("--reference", default=None,
                    help="reference for bpw (embedded, a .gguf, a model dir); default: embedded")
    pl.add_argument("--all", action="store_true", help="every recipe, not only the default cohort")
    pl.add_argument("--json", action="store_true", help="print JSON")
    pl.set_defaults(func=run_list)

    pb = csub.add_parser("build", help="quantize the reference with each recipe and write the quants")
    pb.add_argument("--reference", default=None, help="embedded (default), a .gguf or a model dir")
    pb.add_argument("--recipes", default="default", help="'default' or NAME,NAME,...")
    pb.add_argument("--out", required=True, help="output directory")
    pb.add_argument("--format", choices=("gguf", "safetensors"), default="gguf")
    pb.add_argument("--imatrix", default=None, help="imatrix.npz or a llama.cpp imatrix file")
    pb.add_argument("--json", action="store_true", help="print the reports as JSON")
    pb.set_defaults(func=run_build)

    pi = csub.add_parser("imatrix", help="compute an importance matrix from a calibration corpus")
    pi.add_argument("--reference", default=None, help="embedded (default), a .gguf or a model dir")
    pi.add_argument("--corpus", required=True, help="built-in corpus name or a text file")
    pi.add_argument("--chunks", type=int, default=None, help="at most this many chunks")
    pi.add_argument("--ctx", type=int, default=512, help="chunk length in tokens (default 512)")
    pi.add_argument("--process-output", action="store_true", help="also collect the output projection")
    pi.add_argument("--out", required=True, help="directory (imatrix.npz is written there) or .npz path")
    pi.set_defaults(func=run_imatrix)
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])


def run_list(args: argparse.Namespace) -> int:
    from quantfid.quantize.recipes import DEFAULT_COHORT, get_recipe, list_recipes
    from quantfid.quantize.reference import reference_shape

    try:
        shape = reference_shape(args.reference)
    except QuantfidError as e:
        if args.reference is not None:
            raise
        print(f"quantfid: note: no bits per weight ({e})", file=sys.stderr)
        shape = None
    recipes = list_recipes() if args.all else [get_recipe(n) for n in DEFAULT_COHORT]
    rows: list[dict[str, Any]] = []
    for r in recipes:
        need = r.needs_imatrix(shape) if shape is not None else []
        rows.append({"name": r.name,
                     "bits_per_weight": round(r.bits_per_weight(shape), 4) if shape else None,
                     "default": r.name in DEFAULT_COHORT,
                     "available": not need,
                     "reason": f"needs an importance matrix ({len(need)} tensors)" if need else "",
                     "description": r.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        flag = "" if row["available"] else f"  [unavailable without --imatrix: {row['reason']}]"
        bpw = f"{row['bits_per_weight']:7.3f} bpw" if row["bits_per_weight"] is not None else "    ? bpw"
        print(f"{row['name']:22s} {bpw}  {row['description']}{flag}")
    return 0


def run_imatrix(args: argparse.Namespace) -> int:
    from quantfid.backends.hf import load_hf
    from quantfid.corpus import load_corpus, make_windows, tokenize
    from quantfid.quantize.imatrix import compute_imatrix

    lm = load_hf(args.reference, role="reference")
    corpus = load_corpus(args.corpus)
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    toks = tokenize(corpus.text, lm.tokenizer)
    win = make_windows(toks, args.ctx, bos, scoring="all", max_chunks=args.chunks)
    im = compute_imatrix(lm.module, list(win.ids), meta={
        "model": lm.info.id, "model_hash": lm.info.hash, "corpus": corpus.name,
        "corpus_hash": corpus.hash, "ctx": args.ctx, "windows_hash": win.hash})
    out = Path(args.out)
    path = out if out.suffix == ".npz" else out / "imatrix.npz"
    im.save(path)
    print(json.dumps({"imatrix": str(path), "entries": len(im.values), **im.meta}))
    return 0


def run_build(args: argparse.Namespace) -> int:
    from quantfid.quantize.build import build_cohort

    results = build_cohort(args.reference, args.recipes, Path(args.out), fmt=args.format,
                           imatrix_path=args.imatrix)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if r["status"] == "unavailable":
                print(f"{r['recipe']:22s} unavailable: {r['reason']}")
            else:
                print(f"{r['recipe']:22s} {r['bits_per_weight']:7.3f} bpw  {r['seconds']:6.1f} s  "
                      f"{r['status']:8s} {r['path']}")
    if not any(r["status"] != "unavailable" for r in results):
        raise QuantfidError("no recipe could be built")
    return 0
