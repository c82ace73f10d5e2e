"""What every ingest adapter returns, and the small helpers they share.

An adapter maps one tool's files to :class:`~quantfid.records.Outcome` records (one per
model x benchmark x prompt) plus, where the tool logs it, the prompt text
(:class:`~quantfid.ingest.prompts.PromptText`) and fidelity summary rows. Bad input raises
:class:`~quantfid.errors.FormatError` naming the file and line (or entry).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantfid.errors import FormatError
from quantfid.hashing import hash_file, hash_json
from quantfid.ingest.prompts import PromptText
from quantfid.records import Outcome

DEFAULT_PASS_THRESHOLD = 0.5


@dataclass
class IngestResult:
    """The records read from one ingest call.

    outcomes: per-prompt pass/fail for the ingested model.
    prompts: per-prompt text where the source logs it (lm-eval, LiveCodeBench).
    fidelity: rows for the workspace ``fidelity`` table (llama.cpp KLD logs).
    benchmarks: per benchmark, what the source says about it (task, filter, metric,
      n-shot, task version, dataset hash...); compared across models by ``validate``.
    files: the input files read, per benchmark (their bytes key the unit hash).
    """

    outcomes: list[Outcome] = field(default_factory=list)
    prompts: list[PromptText] = field(default_factory=list)
    fidelity: list[dict[str, Any]] = field(default_factory=list)
    benchmarks: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def by_benchmark(self) -> dict[str, list[Outcome]]:
        out: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            out.setdefault(o.benchmark, []).append(o)
        return out

    def prompts_by_benchmark(self) -> dict[str, list[PromptText]]:
        out: dict[str, list[PromptText]] = {}
        for p in self.prompts:
            out.setdefault(p.benchmark, []).append(p)
        return out


@functools.lru_cache(maxsize=4096)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    return hash_file(path)


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes (memoised per path, size and mtime within a process)."""
    st = path.stat()
    return _file_hash(str(path.resolve()), st.st_size, st.st_mtime_ns)


def unit_hash(files: list[Path], options: dict[str, Any]) -> str:
    """sha256 over the input files' content hashes (by name) and the options that shape
    the outcomes (threshold, filter...): the same files and options give the same hash."""
    return hash_json({"files": sorted((p.name, file_hash(p)) for p in files),
                      "options": options})


def passed_from_score(score: float, threshold: float) -> bool:
    """The stated multi-sample rule: a prompt passes when its pass@1 (fraction of samples
    that pass, 0..1) is at least ``threshold`` (0.5 by default)."""
    return score >= threshold


def read_json(path: Path) -> Any:
    """Parse a whole JSON file; a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text ({e})") from e
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e})") from e
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    except (ValueError, RecursionError) as e:  # an integer of > 4300 digits; deep nesting
        raise FormatError(f"{path}: invalid JSON ({type(e).__name__}: {e})") from e


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (1-based line number, object) for each non-blank line of a JSON Lines file."""
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e})") from e
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise FormatError(f"{path}:{lineno}: invalid JSON: {e.msg} "
                                      f"(column {e.colno})") from e
                except (ValueError, RecursionError) as e:  # huge integer; deep nesting
                    raise FormatError(f"{path}:{lineno}: invalid JSON ({type(e).__name__}: "
                                      f"{e})") from e
                if not isinstance(obj, dict):
                    raise FormatError(f"{path}:{lineno}: expected a JSON object, "
                                      f"got {type(obj).__name__}")
                yield lineno, obj
        except UnicodeDecodeError as e:
            raise FormatError(f"{path}: not UTF-8 text ({e})") from e


def as_float(value: Any, where: str) -> float:
    """A metric value as float (bools and numeric strings accepted), else FormatError."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise FormatError(f"{where}: expected a number, got {value!r}")


def as_finite(value: Any, where: str) -> float:
    """A metric value as a finite float (NaN and infinities refused, naming ``where``)."""
    v = as_float(value, where)
    if not math.isfinite(v):
        raise FormatError(f"{where}: expected a finite number, got {value!r}")
    return v


def as_fraction(value: Any, where: str) -> float:
    """A per-prompt score documented as a fraction: a finite float in [0, 1]."""
    v = as_finite(value, where)
    if not 0.0 <= v <= 1.0:
        raise FormatError(f"{where}: expected a score in [0, 1], got {value!r}")
    return v


def obj(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (for optional nested fields)."""
    return value if isinstance(value, dict) else {}


def find_files(paths: list[Path], pattern: str, what: str) -> list[Path]:
    """Files named in ``paths``, and those matching ``pattern`` below any directory there.

    ``what`` names the expected files in the error for a directory holding none.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.rglob(pattern))
            if not found:
                raise FormatError(f"{p}: no {what} in this directory")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FormatError(f"{p}: no such file or directory")
    return out
