"""``quantfid analyze``: cohort analyses of a workspace, or of a table of per-quant aggregates."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from quantfid.commands.argtypes import nonneg_int, positive_int, unit_fraction


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="correlate fidelity metrics with benchmark scores "
                                       "(full cohort, silent zones, decomposition, failure "
                                       "prediction, routing)")
    p.add_argument("workspace", nargs="?", help="workspace directory (omit with --table)")
    p.add_argument("--table", metavar="FILE", help="CSV / TSV / Markdown table of per-quant aggregates")
    p.add_argument("--metric", action="append", default=None, metavar="COL",
                   help="metric column (table mode, repeatable; the first ranks lowest_k); on a "
                        "workspace: the primary variant (a stat such as kld_mean, or stat@corpus:ctx)")
    p.add_argument("--score", action="append", default=None, metavar="COL",
                   help="score column (table mode, repeatable; higher is better)")
    p.add_argument("--reference", help="table mode: the reference row's name")
    p.add_argument("--name", help="table mode: the column naming the rows (default: the first)")
    p.add_argument("--k", type=nonneg_int, default=None,
                   help="size of the lowest_k silent zone (default or 0: automatic, as the "
                        "study config's k = 0: the paired-test zone's size, else the band's)")
    p.add_argument("--band", type=unit_fraction, default=0.99,
                   help="band rule: score >= BAND x the reference's, BAND in (0, 1] "
                        "(default 0.99)")
    p.add_argument("--n-boot", type=positive_int, default=10000,
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantfid.analysis import text
    from quantfid.analysis.verdict import verdict
    from quantfid.errors import QuantfidError

    rng = np.random.default_rng(args.seed)
    k = args.k or None  # 0 means automatic, as in the study config
    if args.table:
        from quantfid.analysis.table import analyze_table

        if args.workspace:
            raise QuantfidError("give either a WORKSPACE or --table FILE, not both")
        if not args.metric or not args.score:
            raise QuantfidError("--table needs at least one --metric and one --score")
        res = analyze_table(args.table, args.metric, args.score, reference=args.reference,
                            name=args.name, k=k, band=args.band, n_boot=args.n_boot, rng=rng)
        j = res.to_json()
        if args.json:
            json.dump(j, sys.stdout, indent=1)
            print()
        else:
            print(text.format_table_result(j))
            print("\nverdict\n" + str(verdict(j)))
        return 0
    if not args.workspace:
        raise QuantfidError("give a WORKSPACE or --table FILE")
    from quantfid.analysis.run import run_all
    from quantfid.store.workspace import Workspace

    if args.score:
        raise QuantfidError("--score is for --table; on a workspace the scores are its benchmarks")
    metric = args.metric[0] if args.metric else "kld_mean"
    ws = Workspace(args.workspace, create=False)
    result = run_all(ws, k=k, band=args.band, n_boot=args.n_boot, rng=rng, metric=metric)
    j = result.to_json()
    if args.json:
        json.dump(j, sys.stdout, indent=1)
        print()
    else:
        print(text.format_analysis(j, str(verdict(j))))
    return 0
