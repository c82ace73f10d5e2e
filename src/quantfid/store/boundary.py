"""What may enter a workspace, and what is refused when read back from one.

- ``check_manifest``: the manifest's structure (sections are objects, every model an
  object with a string ``id`` and a role, the reference one of the models, intersections
  lists of prompt ids).
- ``check_outcome`` / ``check_outcome_table``: an outcome row (or a whole part) has a
  non-empty model, benchmark and prompt id, ``passed`` a boolean, ``score`` finite or
  null, ``samples`` an integer in [1, 10^9].
- ``apply_intersections``: leaves out the rows an ``ingest --intersect`` excluded.

Each failure is a :class:`~quantfid.errors.FormatError` naming the file or part, the row
and the field.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quantfid.errors import FormatError

ROLES = ("reference", "quant")
MAX_SAMPLES = 10**9  # samples per prompt: far above any benchmark, inside int64
SECTIONS = ("models", "corpora", "benchmarks", "ingest", "intersections")


def _is_num(v: Any) -> bool:
    """A real number (numpy scalars included), not a boolean."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool | np.bool_)


def check_manifest(m: Any, path: Path) -> None:
    """Raise FormatError unless ``m`` is a well-formed manifest (see module doc)."""
    if not isinstance(m, dict):
        raise FormatError(f"{path}: the manifest is not a JSON object")
    for s in SECTIONS:
        if s in m and not isinstance(m[s], dict):
            raise FormatError(f"{path}: section {s!r} is not an object")
    for key, d in (m.get("models") or {}).items():
        where = f"{path}: models[{key!r}]"
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not d["id"]:
            raise FormatError(f"{where}: expected an object with a string 'id'")
        if d.get("role", "quant") not in ROLES:
            raise FormatError(f"{where}: role {d.get('role')!r} is not one of {ROLES}")
        for f in ("bits_per_weight", "bytes"):
            v = d.get(f)
            if v is not None and (not _is_num(v) or not math.isfinite(v) or v < 0):
                raise FormatError(f"{where}: {f} {v!r} is not a number >= 0")
        if not isinstance(d.get("extra", {}), dict):
            raise FormatError(f"{where}: 'extra' is not an object")
    ref = m.get("reference")
    if ref is not None:
        models = m.get("models") or {}
        if not isinstance(ref, str) or ref not in models:
            raise FormatError(f"{path}: reference {ref!r} is not one of the models")
        if models[ref].get("role") != "reference":
            raise FormatError(f"{path}: reference {ref!r} has role {models[ref].get('role')!r}")
    for bench, rec in (m.get("intersections") or {}).items():
        ids = rec.get("prompts") if isinstance(rec, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise FormatError(f"{path}: intersections[{bench!r}] has no list of prompt ids")


def check_outcome(row: dict[str, Any], where: str) -> None:
    """Raise FormatError unless ``row`` is a valid outcome (see module doc)."""
    at = f"{where}: {row.get('model')!r} / {row.get('benchmark')!r} / {row.get('prompt_id')!r}"
    for f in ("model", "benchmark", "prompt_id"):
        if not isinstance(row.get(f), str) or not row[f]:
            raise FormatError(f"{at}: {f} must be a non-empty string, got {row.get(f)!r}")
    if not isinstance(row.get("passed"), bool | np.bool_):
        raise FormatError(f"{at}: passed must be true or false, got {row.get('passed')!r}")
    score = row.get("score")
    if score is not None and (not _is_num(score) or not math.isfinite(score)):
        raise FormatError(f"{at}: score must be a finite number, got {score!r}")
    n = row.get("samples", 1)
    if not _is_int(n) or not 1 <= n <= MAX_SAMPLES:
        raise FormatError(f"{at}: samples must be an integer in [1, {MAX_SAMPLES}], got {n!r}")


def _first(mask: pa.ChunkedArray | pa.Array) -> int | None:
    """Index of the first true value of a boolean array (nulls count as false)."""
    idx = pc.indices_nonzero(pc.fill_null(mask, False))
    return int(idx[0].as_py()) if len(idx) else None


def check_outcome_table(tbl: pa.Table, where: str) -> None:
    """Raise FormatError unless every row of outcomes table ``tbl`` is valid."""
    names = set(tbl.column_names)
    for f in ("model", "benchmark", "prompt_id", "passed"):
        if f not in names:
            raise FormatError(f"{where}: no {f!r} column")
    t = tbl.schema.field
    kinds = {"model": pa.types.is_string, "benchmark": pa.types.is_string,
             "passed": pa.types.is_boolean}
    for f, ok in kinds.items():
        if not (ok(t(f).type) or (pa.types.is_large_string(t(f).type) and f != "passed")):
            raise FormatError(f"{where}: column {f!r} has type {t(f).type}")
    if not (pa.types.is_string(t("prompt_id").type) or pa.types.is_integer(t("prompt_id").type)):
        raise FormatError(f"{where}: column 'prompt_id' has type {t('prompt_id').type}")
    for f in ("model", "benchmark", "prompt_id", "passed"):
        i = _first(pc.is_null(tbl[f]))
        if i is not None:
            raise FormatError(f"{where}: row {i}: {f} is missing")
        if f != "passed" and pa.types.is_string(t(f).type):
            i = _first(pc.equal(pc.utf8_length(tbl[f]), 0))
            if i is not None:
                raise FormatError(f"{where}: row {i}: {f} is empty")
    if "score" in names and not pa.types.is_null(t("score").type):
        if not (pa.types.is_floating(t("score").type) or pa.types.is_integer(t("score").type)):
            raise FormatError(f"{where}: column 'score' has type {t('score').type}")
        if pa.types.is_floating(t("score").type):
            i = _first(pc.invert(pc.is_finite(tbl["score"])))
            if i is not None:
                raise FormatError(f"{where}: row {i}: score {tbl['score'][i].as_py()} is not finite")
    if "samples" in names:
        if not pa.types.is_integer(t("samples").type):
            raise FormatError(f"{where}: column 'samples' has type {t('samples').type}")
        i = _first(pc.or_kleene(pc.is_null(tbl["samples"]), pc.or_(
            pc.less(tbl["samples"], 1), pc.greater(tbl["samples"], MAX_SAMPLES))))
        if i is not None:
            raise FormatError(f"{where}: row {i}: samples {tbl['samples'][i].as_py()!r} is "
                              f"not an integer in [1, {MAX_SAMPLES}]")


def apply_intersections(tbl: pa.Table, intersections: dict[str, Any]) -> pa.Table:
    """``tbl`` without the rows of an intersected benchmark whose prompt was not kept."""
    if not intersections or tbl.num_rows == 0 or not {"benchmark", "prompt_id"} <= set(
            tbl.column_names):
        return tbl
    bench = tbl["benchmark"]
    pid = pc.cast(tbl["prompt_id"], pa.string())
    keep = pa.chunked_array([pa.array([True] * tbl.num_rows)])
    for b, rec in intersections.items():
        ids = pa.array([str(x) for x in rec["prompts"]], pa.string())
        out = pc.and_kleene(pc.equal(bench, b), pc.invert(pc.is_in(pid, value_set=ids)))
        keep = pc.and_(keep, pc.invert(pc.fill_null(out, False)))
    return tbl.filter(keep)
