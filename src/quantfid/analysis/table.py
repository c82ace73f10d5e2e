"""Table mode: analyses 1-3 from a table of per-quant aggregates (no per-prompt data).

Input: CSV, TSV (``.tsv`` or a tab-separated header) or a Markdown pipe table (``.md`` or
a first line starting with ``|``). Rows are models; ``name`` (default: the first column)
names them; the ``reference`` row is excluded from the cohort and anchors the band rule.
Cells are read as the first number they hold (``"95.1%"`` -> 95.1, ``"0.12 ± 0.01"`` ->
0.12); an empty cell, ``-``, ``—``, ``n/a``, ``na`` or ``nan`` is missing. Scores are taken
as higher-is-better. A row with a missing metric or score is left out of every pair using
that column and listed in ``excluded`` as ``{"name": row, "missing": [columns]}``.

``TableResult.to_json()`` is exactly ``{"n", "excluded", "correlations", "silent_zone"}``:
``n`` = cohort rows (the reference excluded); ``correlations`` entries as in
``correlation.Correlation`` (``corpus``/``ctx`` null); ``silent_zone`` = ``{SCORE: {"band":
[names], "lowest_k": [names]}}``. Without a reference the band is empty, and so is
``lowest_k`` unless ``k`` is given.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.analysis.cohort import Cohort, Variant
from quantfid.analysis.correlation import Correlation
from quantfid.analysis.run import DEFAULT_SEED, correlations, zones_for
from quantfid.analysis.silent_zone import SilentZone
from quantfid.errors import FormatError, QuantfidError

MISSING = {"", "-", "—", "–", "n/a", "na", "nan", "none", "null"}
_NUM = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _split_md(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def read_rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV / TSV / Markdown pipe table."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise QuantfidError(f"cannot read table {p}: {e}") from e
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: not UTF-8 text ({e})") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise FormatError(f"{p}: empty table")
    if p.suffix.lower() in (".md", ".markdown") or lines[0].lstrip().startswith("|"):
        rows = [_split_md(ln) for ln in lines if ln.lstrip().startswith("|")]
        rows = [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]
    else:
        delim = "\t" if p.suffix.lower() == ".tsv" or ("\t" in lines[0] and "," not in lines[0]) else ","
        rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO(text), delimiter=delim)]
        rows = [r for r in rows if any(c for c in r)]
    if not rows:
        raise FormatError(f"{p}: no table rows")
    header, body = rows[0], rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise FormatError(f"{p}: data row {i + 1} has {len(r)} cells, the header has {len(header)}")
    return header, body


def parse_cell(cell: str, where: str) -> float:
    c = cell.strip().replace(",", "") if re.fullmatch(r"[\d,.]+", cell.strip()) else cell.strip()
    if c.lower() in MISSING:
        return float("nan")
    m = _NUM.match(c)
    if m is None:
        raise FormatError(f"{where}: {cell!r} is not a number")
    return float(m.group(0))


@dataclass(frozen=True)
class TableResult:
    n: int
    excluded: list[dict[str, Any]]
    correlations: list[Correlation]
    silent_zone: dict[str, SilentZone]
    cohort: Cohort

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "excluded": self.excluded,
                "correlations": [c.to_json() for c in self.correlations],
                "silent_zone": {s: z.to_json(with_paired=False) for s, z in self.silent_zone.items()}}


def table_cohort(path: str | Path, metrics: list[str], scores: list[str], *,
                 reference: str | None = None,
                 name: str | None = None) -> tuple[Cohort, list[dict[str, Any]]]:
    header, body = read_rows(path)
    col = {h: i for i, h in enumerate(header)}
    name = name or header[0]
    for c in [name, *metrics, *scores]:
        if c not in col:
            raise QuantfidError(f"{path}: no column {c!r} (columns: {', '.join(header)})")
    if not metrics or not scores:
        raise QuantfidError("give at least one --metric and one --score column")
    names = [r[col[name]] for r in body]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise FormatError(f"{path}: model names repeat in column {name!r}: {', '.join(dup)}")
    if reference is not None and reference not in names:
        raise QuantfidError(f"{path}: no row named {reference!r} in column {name!r} for --reference")
    vals = {c: np.array([parse_cell(r[col[c]], f"{path}: row {i + 1}, column {c!r}")
                         for i, r in enumerate(body)]) for c in dict.fromkeys([*metrics, *scores])}
    keep = [i for i, n in enumerate(names) if n != reference]
    ref_i = names.index(reference) if reference is not None else None
    excluded = []
    for i in keep:
        miss = [c for c in dict.fromkeys([*metrics, *scores]) if not np.isfinite(vals[c][i])]
        if miss:
            excluded.append({"name": names[i], "missing": miss})
    ref_scores: dict[str, float | None] = {}
    for s in scores:
        v = vals[s][ref_i] if ref_i is not None else float("nan")
        ref_scores[s] = float(v) if np.isfinite(v) else None
    cohort = Cohort(reference=reference, quants=[names[i] for i in keep],
                    variants=[Variant(m) for m in metrics],
                    values=np.array([vals[m][keep] for m in metrics]),
                    scores={s: vals[s][keep] for s in scores}, ref_scores=ref_scores)
    return cohort, excluded


def analyze_table(path: str | Path, metrics: list[str], scores: list[str], *,
                  reference: str | None = None, name: str | None = None, k: int | None = None,
                  band: float = 0.99, n_boot: int = 10000,
                  rng: np.random.Generator | None = None, alpha: float = 0.05) -> TableResult:
    """Correlations (full and each silent zone) and silent zones from a table."""
    rng = np.random.default_rng(DEFAULT_SEED) if rng is None else rng
    cohort, excluded = table_cohort(path, metrics, scores, reference=reference, name=name)
    zones = zones_for(cohort, 0, band=band, k=k, alpha=alpha)
    corr = correlations(cohort, zones, n_boot=n_boot, rng=rng, cache={})
    return TableResult(len(cohort.quants), excluded, corr, zones, cohort)
