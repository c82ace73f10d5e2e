"""The ``quantfid`` command line: parse, build a config, call one library function.

Each subcommand lives in ``quantfid/commands/<name>.py`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking
the parsed namespace and returning an exit status. Heavy imports (torch, transformers)
happen inside those functions, so ``quantfid --help`` stays fast.

Exit statuses: 0 done; 2 an expected failure, stated in one line ``quantfid: error: ...``
on stderr (a bad argument, a bad or unreadable input file, a file-system error such as a
read-only or full disk, a mismatch between inputs; under ``--json`` also the object
``{"error": MESSAGE, "exit": 2}`` on stdout); 2 and no message when stdout is closed early
(``quantfid outcomes W | head -1``); 130 on Ctrl-C or SIGTERM (one line); 1 with a
traceback for anything else, which is a bug.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from quantfid import interrupts
from quantfid._version import __version__
from quantfid.errors import QuantfidError

COMMANDS = ("stats", "measure", "cohort", "bench", "ingest", "outcomes", "analyze", "study", "report")
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

_OS_HINTS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "no space left on the device; free some and re-run",
    errno.EDQUOT: "disk quota exceeded; free some space and re-run",
    errno.ENOTDIR: "a file is in the way where a directory is needed",
    errno.EISDIR: "this is a directory, a file is needed",
    errno.EEXIST: "it already exists",
    errno.ENOENT: "no such file or directory",
}


class UsageError(QuantfidError):
    """A command-line argument argparse refused (unknown option, bad value, missing one)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting, so a
    bad argument is one line (and JSON under ``--json``) like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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


def os_error_message(e: OSError) -> str:
    """One line for a file-system error: the path(s), the system's words, and a hint."""
    what = e.strerror or str(e) or type(e).__name__
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    hint = _OS_HINTS.get(e.errno or 0)
    line = f"{where}: {what}" if where else what
    return f"{line} ({hint})" if hint and hint.lower() != what.lower() else line


def _wants_json(argv: Sequence[str] | None) -> bool:
    return "--json" in (sys.argv[1:] if argv is None else argv)


def _fail(kind: str, message: str, status: int, as_json: bool) -> int:
    with contextlib.suppress(OSError, ValueError):
        print(f"quantfid: {kind}{message}", file=sys.stderr)
    if as_json:
        with contextlib.suppress(OSError, ValueError):
            print(json.dumps({"error": message, "exit": status}))
            sys.stdout.flush()
    return status


def _silence_stdout() -> None:
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError, AttributeError):  # stdout replaced (tests) or already gone
        pass


def main(argv: Sequence[str] | None = None) -> int:
    as_json = _wants_json(argv)
    with interrupts.handled():
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help(sys.stderr)
                return EXIT_ERROR
            status = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
            return status
        except BrokenPipeError:
            _silence_stdout()
            return EXIT_ERROR
        except QuantfidError as e:
            return _fail("error: ", str(e), EXIT_ERROR, as_json)
        except OSError as e:
            return _fail("error: ", os_error_message(e), EXIT_ERROR, as_json)
        except KeyboardInterrupt as e:
            why = "terminated (SIGTERM)" if isinstance(e, interrupts.Terminated) else "interrupted"
            return _fail("", f"{why}; finished units are kept, re-run to resume",
                         EXIT_INTERRUPTED, as_json)


if __name__ == "__main__":
    sys.exit(main())
