"""``quantfid ingest FORMAT PATH... --model NAME --workspace W``: import another tool's results."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from quantfid.commands.argtypes import positive_int, unit_fraction
from quantfid.errors import QuantfidError
from quantfid.ingest.common import DEFAULT_PASS_THRESHOLD
from quantfid.ingest.run import FORMATS, IngestSummary, read, store
from quantfid.ingest.table import parse_map


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest", help="import per-prompt results of lm-eval, LiveCodeBench, evalplus, "
                       "llama-perplexity logs or a CSV/JSONL table into a workspace",
        description="Import per-prompt pass/fail (and prompt texts, llama.cpp KLD summaries) "
                    "for one model. Mismatched prompt sets between models of the cohort are "
                    "an error unless --intersect.")
    p.add_argument("format", choices=FORMATS, metavar="FORMAT",
                   help=f"one of: {', '.join(FORMATS)}")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="files or directories (lm-eval: an --output_path directory or "
                        "samples_<task>_<date>.jsonl files)")
    p.add_argument("--model", required=True, help="the workspace model id these results are for")
    p.add_argument("--reference", action="store_true",
                   help="mark this model as the cohort's reference")
    p.add_argument("--workspace", "-w", required=True, type=Path, help="workspace directory")
    p.add_argument("--benchmark", action="append", default=None, metavar="NAME",
                   help="lm-eval: tasks to import (repeatable; default all); other formats: "
                        "the benchmark name (table: when there is no benchmark column)")
    p.add_argument("--filter", dest="filter_name", default=None,
                   help="lm-eval: the one filter to import for tasks with several "
                        "(stored as <task>); default: each filter as <task>/<filter>")
    p.add_argument("--pass-threshold", type=unit_fraction, default=DEFAULT_PASS_THRESHOLD,
                   help="multi-sample rule: a prompt passes when pass@1 >= this (default 0.5)")
    p.add_argument("--intersect", action="store_true",
                   help="analyse only the prompts shared with the cohort: every model's "
                        "results stay stored, the kept prompts are recorded in the manifest "
                        "(section 'intersections') and applied when reading (warns)")
    p.add_argument("--map", default=None, metavar="FIELD=COL,...",
                   help="table: column mapping, e.g. prompt_id=id,passed=ok,score=s")
    p.add_argument("--corpus", default=None,
                   help="llamacpp: corpus id for the KLD summary's fidelity row")
    p.add_argument("--ctx", type=positive_int, default=None,
                   help="llamacpp: context length (default: parsed from the log)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantfid.store.workspace import MANIFEST, Workspace

    path: Path = args.workspace
    if path.exists() and not path.is_dir():
        raise QuantfidError(f"--workspace {path} exists and is not a directory")
    exists = (path / MANIFEST).exists()
    ws = Workspace(path, create=False) if exists else None
    mapping = parse_map(args.map) if args.map else None
    ref = args.model if args.reference else (ws.manifest.get("reference") if ws else None)
    res = read(args.format, list(args.paths), args.model, benchmarks=args.benchmark,
               filter_name=args.filter_name, pass_threshold=args.pass_threshold,
               mapping=mapping, corpus=args.corpus, ctx=args.ctx, reference=ref)
    options = {"format": args.format, "threshold": args.pass_threshold,
               "filter": args.filter_name, "benchmarks": sorted(args.benchmark or []),
               "map": mapping or {}}
    with _new_workspace_removed_on_error(path, created=not exists):
        ws = ws or Workspace(path)  # a new workspace appears only once the input is good
        summary = store(ws, res, args.format, args.model, reference=args.reference,
                        intersect=args.intersect, options=options,
                        source=", ".join(map(str, args.paths)))
    for w in summary.warnings:
        print(f"quantfid: warning: {w}", file=sys.stderr)
    for b in summary.benchmarks:
        if b.dropped or b.dropped_others:
            others = "; ".join(f"{len(v)} from {k}" for k, v in b.dropped_others.items())
            print(f"quantfid: warning: --intersect on {b.benchmark}: dropped {len(b.dropped)} "
                  f"prompt(s) from {summary.model}" + (f", {others}" if others else "")
                  + " (kept in the workspace, left out of the analysis)", file=sys.stderr)
    if args.json:
        print(json.dumps(_jsonable(summary), indent=2, sort_keys=True))
    else:
        _print_table(summary)
    return 0


@contextlib.contextmanager
def _new_workspace_removed_on_error(path: Path, created: bool) -> Iterator[None]:
    """On an error, remove what creating the workspace made (nothing else is there yet)."""
    before = set(os.listdir(path)) if path.is_dir() else None
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                if before is None:
                    shutil.rmtree(path)
                else:
                    for name in set(os.listdir(path)) - before:
                        p = path / name
                        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        raise


def _jsonable(s: IngestSummary) -> dict[str, object]:
    d = s.to_json()
    for b in d["benchmarks"]:
        if isinstance(b["accuracy"], float) and math.isnan(b["accuracy"]):
            b["accuracy"] = None
    return d


def _print_table(s: IngestSummary) -> None:
    if s.benchmarks:
        w = max(9, *(len(b.benchmark) for b in s.benchmarks))
        print(f"{'benchmark':<{w}}  {'n':>6}  {'accuracy':>8}  status")
        for b in s.benchmarks:
            print(f"{b.benchmark:<{w}}  {b.n:>6}  {b.accuracy:>8.4f}  {b.status}")
    for r in s.fidelity:
        kld = r.get("kld_mean")
        print(f"fidelity {s.model} vs {r.get('reference')} on {r['corpus']} ctx {r['ctx']}: "
              f"KLD mean {kld if kld is None else format(kld, '.6f')}, "
              f"n_windows {r.get('n_windows')}")
