"""The CSV files written beside the report (``csv/<name>.csv``): every table in full, unrounded.

``datasets(a)`` returns name -> (columns, rows as dicts of plain values); ``write(out, sets)``
writes them (empty cells for None, lists joined with ``;``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from quantfid import atomic
from quantfid.report import view
from quantfid.report.blocks import columns_of

Dataset = tuple[list[str], list[dict[str, Any]]]


def _cohort(a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in view.cohort_rows(a):
        d: dict[str, Any] = {"model": c.get("model"), "bits_per_weight": c.get("bits_per_weight"),
                             "bytes": c.get("bytes"), **{f"{k}": v for k, v in
                                                         (c.get("numerics") or {}).items()}}
        for s in view.scores(a):
            sc = (c.get("scores") or {}).get(s) or {}
            d.update({f"{s}": sc.get("accuracy"), f"{s}_ci_low": sc.get("ci_low"),
                      f"{s}_ci_high": sc.get("ci_high")})
        out.append(d)
    return out


def _variants(a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for c in view.cohort_rows(a):
        for key, m in (c.get("metrics") or {}).items():
            if isinstance(m, dict):
                out.append({"model": c.get("model"), "variant": key, **m})
    return out


def _zones(a: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for score, rules in ((a.get("resolution") or {}).get("scores") or {}).items():
        for rule, r in rules.items():
            out.append({"score": score, "rule": rule,
                        **{k: (";".join(map(str, v)) if isinstance(v, list) else v)
                           for k, v in r.items() if k not in ("score", "rule")}})
    return out


def datasets(a: dict[str, Any]) -> dict[str, Dataset]:
    dec = a.get("decomposition") or {}
    router = a.get("router") or {}
    pooled = [{"scope": "pooled", **router["pooled"]}] if router.get("pooled") else []
    if router.get("pooled_silent"):
        pooled.append({"scope": f"pooled_silent ({router.get('silent_rule')})",
                       **router["pooled_silent"]})
    pooled += [{"scope": b.get("benchmark"), **{k: v for k, v in b.items() if k != "benchmark"}}
               for b in view.rows_of(router, "per_benchmark")]
    floors = [{"variant": k, **v} for k, v in (view.cohort(a).get("noise_floor") or {}).items()]
    raw: dict[str, list[dict[str, Any]]] = {
        "cohort": _cohort(a), "variants": _variants(a), "zones": _zones(a),
        "mde": view.rows_of(view.cohort(a), "benchmarks"),
        "correlations": view.rows_of(a.get("robustness")) or view.correlations(a),
        "robustness": view.rows_of(a.get("robustness"), "summary"),
        "flips": view.rows_of(dec), "flips_composite": view.rows_of(dec, "composite"),
        "flip_correlations": view.rows_of(dec, "correlations"),
        "failure_prediction": view.rows_of(a.get("failure_prediction")),
        "router_pooled": pooled, "router_pairs": view.rows_of(router, "pairs"),
        "noise_floor": floors}
    return {k: (columns_of(v), v) for k, v in raw.items() if v}


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return ";".join(map(str, v))
    return v


def write(out: Path, sets: dict[str, Dataset]) -> list[Path]:
    paths = []
    for name, (cols, rows) in sets.items():
        buf = io.StringIO()
        wr = csv.writer(buf, lineterminator="\n")
        wr.writerow(cols)
        wr.writerows([[_cell(r.get(c)) for c in cols] for r in rows])
        p = out / "csv" / f"{name}.csv"
        atomic.write_text(p, buf.getvalue())
        paths.append(p)
    return paths
