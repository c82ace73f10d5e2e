"""The ``quantfid`` command line: parse, build a config, call one library function.

Each subcommand lives in ``quantfid/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking
the parsed namespace and returning an exit status. Heavy imports (torch, transformers)
happen inside those functions, so ``quantfid --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from quantfid._version import __version__
from quantfid.errors import QuantfidError

COMMANDS = ("stats", "measure", "cohort", "bench", "ingest", "outcomes", "analyze", "study", "report")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="quantfid",
        description="Measure how far quantized LLMs drift from their reference, collect "
                    "per-prompt benchmark outcomes, and test whether the drift predicts quality.")
    p.add_argument("--version", action="version", version=f"quantfid {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"quantfid.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"quantfid.commands.{name}":
                continue
            raise
        mod.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except QuantfidError as e:
        print(f"quantfid: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("quantfid: interrupted; finished units are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
