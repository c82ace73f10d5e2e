"""Assemble the report from an analysis result and its provenance, and write its files.

``write_report(out_dir, analysis, provenance)`` writes, at the top of ``out_dir``:
``report.html`` (self-contained), ``report.md`` (images beside it), ``plots/*.png``,
``csv/*.csv`` (every table in full) and ``summary.json``. Content order, the same in both
files: the first screen (verdict sentence, the numbers behind it, the caveats), the cohort
table (at most 10 columns), the near-reference zones, the plots each with a one-line
takeaway, then collapsed sections (every variant, every correlation, robustness, flips,
failure prediction per benchmark, router per pair, method, provenance).

``summary.json`` (``FORMAT_VERSION`` 2, documented in ``docs/formats.md``): the analysis
sections unchanged, ``provenance``, ``verdict`` (headline, findings, caveats, flags),
``methods`` (how each kind of interval was computed) and ``report`` (the files written).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantfid import atomic, embedded
from quantfid.analysis import cluster, failure, resolution, router
from quantfid.metrics import summary as fidelity_summary
from quantfid.report import csvs, details, figures, view
from quantfid.report.blocks import Block, Heading, Image, Para
from quantfid.report.cohort_table import by_bpw as _by_bpw
from quantfid.report.cohort_table import cohort_tables, zones_table
from quantfid.report.first_screen import first_screen
from quantfid.report.render import to_html, to_markdown
from quantfid.report.verdict import Verdict, verdict

__all__ = [
    "FORMAT_VERSION",
    "SECTIONS",
    "ReportFiles",
    "_by_bpw",
    "build",
    "summary",
    "write_report",
]

FORMAT_VERSION = 2
SECTIONS = ("cohort", "correlations", "silent_zone", "resolution", "robustness",
            "decomposition", "failure_prediction", "router")
TITLE = "quantfid report: does fidelity predict quality?"


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    summary: Path
    plots: tuple[Path, ...]
    verdict: Verdict
    csv: tuple[Path, ...] = ()


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def is_embedded_reference(provenance: dict[str, Any]) -> bool:
    ref = provenance.get("reference")
    for mdl in provenance.get("inputs", {}).get("models", []):
        if mdl.get("id") == ref and str(mdl.get("source") or "").startswith("embedded:"):
            return True
    return ref == embedded.MODEL_ID


def _plots(a: dict[str, Any], v: Verdict) -> list[Block]:
    out: list[Block] = []
    for name, fn in figures.BUILDERS:
        fig = fn(a, v.flags)
        if fig is not None:
            out.append(Image(name=name, caption=fig.caption, png=fig.plot.png,
                             width=fig.plot.width, height=fig.plot.height, takeaway=fig.takeaway))
    return out or [Para("No plot could be drawn: the analysis has too little data.")]


def build(analysis: dict[str, Any], provenance: dict[str, Any], v: Verdict | None = None
          ) -> tuple[list[Block], Verdict, dict[str, csvs.Dataset]]:
    """The report's blocks (plots rendered), the verdict they open with, the CSV datasets."""
    a = clean(analysis)
    v = v or verdict(a)
    emb = is_embedded_reference(provenance)
    sets = csvs.datasets(a)
    blocks: list[Block] = [*first_screen(v, emb), Heading("Cohort")]
    blocks += cohort_tables(a)
    zt = zones_table(a, v.flags)
    if zt is not None:
        blocks.append(zt)
    blocks.append(Heading("Plots"))
    blocks += _plots(a, v)
    blocks.append(Heading("Details"))
    blocks += details.sections(a, sets)
    blocks += details.method(provenance, emb)
    blocks += details.provenance_blocks(provenance)
    return blocks, v, sets


def methods(a: dict[str, Any]) -> dict[str, Any]:
    """How each kind of number was computed, with counts of the fidelity interval methods."""
    counts: Counter[str] = Counter()
    for c in view.cohort_rows(a):
        for m in (c.get("metrics") or {}).values():
            if isinstance(m, dict) and m.get("ci_method"):
                counts[str(m["ci_method"])] += 1
    return {"fidelity_intervals": dict(counts),
            "fidelity_interval_methods": {
                "window-bootstrap": "percentile bootstrap over windows (>= "
                                    f"{fidelity_summary.MIN_WINDOWS} windows)",
                "moving-block-bootstrap": "circular moving-block bootstrap within windows, "
                                          "Politis-White block length from the autocorrelation "
                                          "of per-token KLD",
                "token-bootstrap": "percentile bootstrap over tokens (no window ids)"},
            "zone_resolution": resolution.METHOD, "failure_prediction": failure.METHOD,
            "router": router.METHOD,
            "router_pooled": f"{cluster.STUDENTIZED}: studentized cluster bootstrap over prompts",
            "scores": "accuracy with the Wilson 95 % interval"}


def summary(analysis: dict[str, Any], provenance: dict[str, Any], v: Verdict,
            files: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """``summary.json``: the analysis sections unchanged, ``provenance``, ``verdict``, ..."""
    a = clean(analysis)
    out: dict[str, Any] = {"format_version": FORMAT_VERSION}
    out.update({k: a.get(k) for k in SECTIONS})
    out.update({k: v2 for k, v2 in a.items() if k not in out})
    out["provenance"] = clean(provenance)
    out["verdict"] = clean(v.to_json())
    out["methods"] = methods(a)
    out["report"] = files or {}
    return out


def write_report(out_dir: str | Path, analysis: dict[str, Any], provenance: dict[str, Any],
                 v: Verdict | None = None) -> ReportFiles:
    """Write report.html, report.md, plots/*.png, csv/*.csv and summary.json in ``out_dir``."""
    out = Path(out_dir)
    blocks, v, sets = build(analysis, provenance, v)
    pngs = []
    for b in blocks:
        if isinstance(b, Image):
            path = out / "plots" / b.name
            atomic.write_bytes(path, b.png)
            pngs.append(path)
    csv_paths = csvs.write(out, sets)
    atomic.write_text(out / "report.html", to_html(TITLE, blocks))
    atomic.write_text(out / "report.md", to_markdown(TITLE, blocks, "plots"))
    files = {"plots": [f"plots/{p.name}" for p in pngs],
             "csv": [f"csv/{p.name}" for p in csv_paths]}
    atomic.write_json(out / "summary.json", summary(analysis, provenance, v, files))
    return ReportFiles(html=out / "report.html", markdown=out / "report.md",
                       summary=out / "summary.json", plots=tuple(pngs), verdict=v,
                       csv=tuple(csv_paths))
