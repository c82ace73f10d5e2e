"""``quantfid report WORKSPACE [--out DIR]``: rebuild the report without running any model.

The report is written into a hidden staging directory beside its destination and moved
into place once complete, so a failed or interrupted report leaves the previous one (and
the workspace) as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from quantfid.commands.argtypes import nonneg_int, positive_int
from quantfid.errors import QuantfidError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write report.html, report.md, summary.json and plots/ from a workspace",
        description="Rebuild the report from a workspace's tables (runs the analysis, never a "
                    "model). --stored reuses the workspace's analysis.json instead.")
    p.add_argument("workspace", help="a quantfid workspace directory")
    p.add_argument("--out", help="where to write the report (default: the workspace itself)")
    p.add_argument("--stored", action="store_true",
                   help="use the analysis stored by the study (analysis.json) instead of re-running it")
    p.add_argument("--n-boot", type=positive_int, default=None, help="bootstrap resamples "
                   "(default: the study's, else 2000)")
    p.add_argument("--seed", type=nonneg_int, default=None,
                   help="analysis seed (default: the study's, else 0)")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON on stdout")
    p.set_defaults(func=run)


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be a directory, before any work."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "--out" if p == out else f"--out {out}: its parent"
                raise QuantfidError(f"{what} {p} exists and is not a directory")
            return


def _publish(staging: Path, out: Path) -> None:
    """Move every file of ``staging`` to the same place under ``out`` (plots first, the
    report pages last, so a reader never sees pages pointing at missing plots)."""
    files = sorted((p for p in staging.rglob("*") if p.is_file()),
                   key=lambda p: (len(p.relative_to(staging).parts) == 1, str(p)))
    for src in files:
        dst = out / src.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)


def run(args: argparse.Namespace) -> int:
    import json

    from quantfid.report.workspace import report_workspace
    from quantfid.store.workspace import Workspace

    Workspace(args.workspace, create=False)  # a missing or foreign workspace: refused first
    out = Path(args.out) if args.out is not None else Path(args.workspace)
    check_out(out)
    base = out if out.is_dir() else next(p for p in out.parents if p.exists())
    staging = Path(tempfile.mkdtemp(prefix=".quantfid-report-", dir=base))
    try:
        files = report_workspace(args.workspace, out=staging, stored=args.stored,
                                 n_boot=args.n_boot, seed=args.seed)
        out.mkdir(parents=True, exist_ok=True)
        _publish(staging, out)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
    print(f"report: {out / files.html.name}", file=sys.stderr)
    print(json.dumps(files.verdict.to_json(), indent=2) if args.json else str(files.verdict))
    return 0
