"""``quantfid study [config.toml] [--out DIR] [--quick|--full] [--executor local|ray]
[--address ADDR] [--print-default-config]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

DEFAULT_OUT = "quantfid-study"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study", help="the whole method end to end: build a cohort, measure, bench, analyse, report",
        description="Run the study: the reference and its cohort of quants over every corpus "
                    "and context length, the benchmarks per prompt with per-prompt fidelity, every "
                    "analysis, and the report (report.html, report.md, summary.json, plots/) at "
                    "the top of the output directory, which is the study's workspace. Re-running "
                    "resumes: finished units are skipped. With no config: the embedded default.")
    p.add_argument("config", nargs="?", help="a study TOML file (see --print-default-config)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"the study's workspace (default ./{DEFAULT_OUT})")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="8 quants, contexts 128/256, a dozen prompts per task (about 3 minutes)")
    size.add_argument("--full", action="store_true",
                      help="more windows and every prompt of each task (hours on a CPU)")
    p.add_argument("--print-default-config", action="store_true",
                   help="print the configuration as TOML (of --quick/--full if given) and exit")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="where units run: local (this process, the default) or ray (a Ray "
                        "cluster; see docs/cluster.md); overrides [executor] kind")
    p.add_argument("--address", metavar="ADDR",
                   help="with --executor ray: the cluster's head (host:port); default: start a "
                        "one-machine cluster for the run; overrides [executor] address")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from quantfid import config
    from quantfid.errors import QuantfidError

    name: config.Preset = "quick" if args.quick else "full" if args.full else "default"
    if args.print_default_config:
        if args.config:
            raise QuantfidError("--print-default-config prints the built-in configuration; "
                                "drop the config file argument")
        sys.stdout.write(config.to_toml(config.preset(name)))
        return 0
    cfg = config.load(args.config, base=name) if args.config else config.preset(name)
    cfg = _with_executor(cfg, args.executor, args.address)
    from quantfid.study import run_study

    res = run_study(cfg, args.out)
    print(f"report: {res.workspace / 'report.html'} (units run {res.units_run}, "
          f"skipped {res.units_skipped})", file=sys.stderr)
    if args.json:
        print(json.dumps(res.verdict.to_json(), indent=2))
    else:
        print(res.verdict)
    return 0


def _with_executor(cfg: Any, kind: str | None, address: str | None) -> Any:
    """``cfg`` with ``--executor`` / ``--address`` applied."""
    import dataclasses

    from quantfid.errors import QuantfidError

    x = cfg.executor
    if kind is not None:
        x = dataclasses.replace(x, kind=kind)
    if address is not None:
        if x.kind != "ray":
            raise QuantfidError("--address names a Ray cluster: give --executor ray too")
        x = dataclasses.replace(x, address=address)
    return dataclasses.replace(cfg, executor=x)
