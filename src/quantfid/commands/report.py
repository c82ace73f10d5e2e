"""``quantfid report WORKSPACE [--out DIR]``: rebuild the report without running any model."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write report.html, report.md, summary.json and plots/ from a workspace",
        description="Rebuild the report from a workspace's tables (runs the analysis, never a "
                    "model). --stored reuses the workspace's analysis.json instead.")
    p.add_argument("workspace", help="a quantfid workspace directory")
    p.add_argument("--out", help="where to write the report (default: the workspace itself)")
    p.add_argument("--stored", action="store_true",
                   help="use the analysis stored by the study (analysis.json) instead of re-running it")
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (default: the "
                   "study's, else 2000)")
    p.add_argument("--seed", type=int, default=None, help="analysis seed (default: the study's, else 0)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from quantfid.report.workspace import report_workspace

    files = report_workspace(args.workspace, out=args.out, stored=args.stored, n_boot=args.n_boot,
                             seed=args.seed)
    print(f"report: {files.html}", file=sys.stderr)
    print(json.dumps(files.verdict.to_json(), indent=2) if args.json else str(files.verdict))
    return 0
