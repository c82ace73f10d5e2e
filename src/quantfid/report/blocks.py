"""The report's content as a list of blocks, rendered alike to HTML and Markdown.

A report is built once as blocks (headings, paragraphs, tables, images, notes, collapsed
sections); the HTML and Markdown writers only differ in syntax, so both files say exactly
the same thing in the same order. A ``Table`` may name a CSV file beside the report
(``csv``) holding all its rows, unrounded; the writers link it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Para:
    """A paragraph; ``strong`` renders it bold (the verdict's headline); ``id`` anchors it."""

    text: str
    strong: bool = False
    id: str = ""


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]
    id: str = ""


@dataclass(frozen=True)
class Table:
    """A table of formatted cells; ``csv``: the CSV file beside the report with every row;
    ``md_rows``: how many rows report.md shows (the rest: the CSV)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    id: str = ""
    csv: str = ""
    md_rows: int = 1000


@dataclass(frozen=True)
class Image:
    """A PNG plot: ``name`` is its file name under ``plots/``; ``png`` its bytes."""

    name: str
    caption: str
    png: bytes = field(repr=False)
    width: int = 0
    height: int = 0
    takeaway: str = ""


@dataclass(frozen=True)
class Note:
    """A caveat box."""

    text: str


@dataclass(frozen=True)
class Details:
    """A collapsed section (HTML ``<details>``; a plain section in Markdown)."""

    title: str
    blocks: tuple[Block, ...]


Block = Heading | Para | Bullets | Table | Image | Note | Details


def fmt(value: Any, digits: int = 3) -> str:
    """A cell: numbers with ``digits`` significant digits, None as an em dash, lists joined."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, digits) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items())
    return str(value)


def table_from_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                    caption: str = "", digits: int = 3, max_rows: int = 500, *, csv: str = "",
                    id: str = "", md_rows: int = 1000) -> Table:
    """A table whose columns are ``columns`` or the union of the rows' keys, in first-seen order.

    Nested values (dicts / lists of dicts) are skipped when columns are inferred: they are
    summarised elsewhere and kept whole in ``summary.json``.
    """
    if columns is None:
        columns = columns_of(rows)
    shown = rows[:max_rows]
    body = tuple(tuple(fmt(r.get(c), digits) for c in columns) for r in shown)
    if len(rows) > max_rows:
        where = csv or "summary.json"
        caption = f"{caption} (first {max_rows} of {len(rows)} rows; all in {where})".strip()
    return Table(columns=tuple(columns), rows=body, caption=caption, id=id, csv=csv,
                 md_rows=md_rows)


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The union of the rows' flat keys, in first-seen order."""
    seen: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
                continue
            seen.setdefault(k, None)
    return list(seen)
