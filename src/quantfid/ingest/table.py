"""Generic CSV / JSONL per-prompt results with a column mapping -> Outcomes.

``--map prompt_id=COL,passed=COL,score=COL,benchmark=COL,samples=COL,prompt_hash=COL,
prompt=COL,model=COL`` names the columns; a field not mapped is looked up under its own
name. ``--benchmark NAME`` gives a constant benchmark when there is no such column.
``passed`` accepts 1/0, 1.0/0.0, true/false, pass/fail, passed/failed, yes/no (any case);
anything else is an error naming the row. ``score`` is a fraction: a finite number in
[0, 1] (anything else is an error naming the row); without a ``passed`` column it is
turned into pass/fail by ``score >= pass_threshold``. ``samples``: an integer >= 1. With a ``model``
column, only the rows of the ingested model are kept.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantfid.errors import FormatError, QuantfidError
from quantfid.ingest.common import (
    DEFAULT_PASS_THRESHOLD,
    IngestResult,
    as_finite,
    as_fraction,
    iter_jsonl,
    passed_from_score,
)
from quantfid.ingest.prompts import PromptText
from quantfid.records import Outcome
from quantfid.store.boundary import MAX_SAMPLES

SOURCE = "table"
FIELDS = ("prompt_id", "passed", "score", "benchmark", "samples", "prompt_hash", "prompt", "model")
_TRUE = {"1", "1.0", "true", "pass", "passed", "yes", "y", "t"}
_FALSE = {"0", "0.0", "false", "fail", "failed", "no", "n", "f"}


def parse_map(spec: str | None) -> dict[str, str]:
    """``"prompt_id=id,passed=ok"`` -> {"prompt_id": "id", "passed": "ok"}."""
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise QuantfidError(f"--map: expected FIELD=COLUMN, got {item!r}")
        k, v = (s.strip() for s in item.split("=", 1))
        if k not in FIELDS:
            raise QuantfidError(f"--map: unknown field {k!r} (fields: {', '.join(FIELDS)})")
        out[k] = v
    return out


def parse_passed(value: Any, where: str) -> bool:
    """Truthy parsing of a pass/fail cell; anything unrecognised is a FormatError."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    s = str(value).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise FormatError(f"{where}: passed value {value!r} is not one of 1/0, true/false, "
                      "pass/fail, yes/no")


def _rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        for n, obj in iter_jsonl(path):
            yield f"{path}:{n}", obj
        return
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise FormatError(f"{path}: expected a .csv, .tsv or .jsonl file")
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            for row in reader:
                if None in row:
                    raise FormatError(f"{path}:{reader.line_num}: more cells than header columns")
                yield f"{path}:{reader.line_num}", row
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise FormatError(f"{path}: cannot read as CSV ({e})") from e


def read(paths: list[Path], model: str, *, mapping: dict[str, str] | None = None,
         benchmark: str | None = None,
         pass_threshold: float = DEFAULT_PASS_THRESHOLD) -> IngestResult:
    """Read generic per-prompt tables for ``model`` (the workspace model id)."""
    cols = {f: (mapping or {}).get(f, f) for f in FIELDS}
    res = IngestResult()
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        if path.is_dir():
            raise FormatError(f"{path}: is a directory; give the table file itself "
                              "(.csv, .tsv or .jsonl)")
        if not path.is_file():
            raise FormatError(f"{path}: no such file")
        n_rows = 0
        for where, row in _rows(path):
            n_rows += 1

            def cell(field: str, row: dict[str, Any] = row) -> Any:
                v = row.get(cols[field])
                return None if v is None or (isinstance(v, str) and v.strip() == "") else v

            if n_rows == 1:
                for need in ("prompt_id",):
                    if cols[need] not in row:
                        raise FormatError(f"{where}: no column {cols[need]!r} for {need} "
                                          f"(columns: {', '.join(row)}); use --map {need}=COLUMN")
                if cols["passed"] not in row and cols["score"] not in row:
                    raise FormatError(f"{where}: no {cols['passed']!r} or {cols['score']!r} column"
                                      f" (columns: {', '.join(row)}); use --map passed=COLUMN")
                if benchmark is None and cols["benchmark"] not in row:
                    raise FormatError(f"{where}: no {cols['benchmark']!r} column; give "
                                      "--benchmark NAME or --map benchmark=COLUMN")
            if cols["model"] in row and cell("model") is not None and str(cell("model")) != model:
                continue
            pid = cell("prompt_id")
            if pid is None:
                raise FormatError(f"{where}: empty prompt_id")
            bench = benchmark if benchmark is not None else cell("benchmark")
            if bench is None:
                raise FormatError(f"{where}: empty benchmark")
            bench, pid = str(bench), str(pid)
            score = None if cell("score") is None else as_fraction(cell("score"), f"{where}: score")
            if cell("passed") is not None:
                passed = parse_passed(cell("passed"), where)
            elif score is not None:
                passed = passed_from_score(score, pass_threshold)
            else:
                raise FormatError(f"{where}: neither passed nor score given")
            samples = 1
            if cell("samples") is not None:
                s = as_finite(cell("samples"), f"{where}: samples")
                if s != int(s) or not 1 <= s <= MAX_SAMPLES:
                    raise FormatError(f"{where}: samples must be an integer in [1, "
                                      f"{MAX_SAMPLES}], got {cell('samples')!r}")
                samples = int(s)
            if (bench, pid) in seen:
                raise FormatError(f"{where}: prompt {pid!r} of {bench!r} appears twice "
                                  f"(first at {seen[(bench, pid)]})")
            seen[(bench, pid)] = where
            prompt = cell("prompt")
            phash = cell("prompt_hash")
            if phash is None and prompt is not None:
                phash = hashlib.sha256(str(prompt).encode("utf-8")).hexdigest()
            res.outcomes.append(Outcome(model=model, benchmark=bench, prompt_id=pid,
                                        passed=passed, score=score, samples=samples,
                                        source=SOURCE, prompt_hash=None if phash is None else str(phash)))
            if prompt is not None:
                res.prompts.append(PromptText(bench, pid, str(prompt)))
            info = res.benchmarks.setdefault(bench, {"source": SOURCE, "metric": "passed", "n": 0})
            info["n"] += 1
            files = res.files.setdefault(bench, [])
            if path not in files:
                files.append(path)
        if n_rows == 0:
            raise FormatError(f"{path}: no rows")
    if not res.outcomes:
        raise FormatError(f"no rows for model {model!r} in {', '.join(map(str, paths))}")
    return res
