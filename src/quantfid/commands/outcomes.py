"""``quantfid outcomes W``: per model and benchmark accuracy, and flips against the reference."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("outcomes", help="per model and benchmark: n, accuracy with CI, gains, "
                                        "losses and exact McNemar p against the reference")
    p.add_argument("workspace", help="workspace directory")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quantfid.analysis.outcomes import outcome_summary
    from quantfid.analysis.text import table
    from quantfid.store.workspace import Workspace

    rows = outcome_summary(Workspace(args.workspace, create=False))
    if args.json:
        json.dump([r.to_json() for r in rows], sys.stdout, indent=1)
        print()
        return 0
    if not rows:
        print("no outcomes in this workspace")
        return 0
    print(table(("model", "benchmark", "n", "accuracy", "ci_low", "ci_high", "gains", "losses",
                 "mcnemar_p"),
                [[r.model, r.benchmark, r.n, r.accuracy, r.ci_low, r.ci_high, r.gains, r.losses,
                  r.mcnemar_p] for r in rows]))
    return 0
