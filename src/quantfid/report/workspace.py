"""The report of a workspace: analysis from its tables (or its stored analysis.json), no model."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.errors import FormatError, QuantfidError
from quantfid.report import provenance
from quantfid.report.build import ReportFiles, write_report
from quantfid.store.workspace import Workspace

ANALYSIS_FILE = "analysis.json"
STUDY_CONFIG = "study-config.json"


def _study_config(ws: Workspace) -> dict[str, Any] | None:
    p = ws.path / STUDY_CONFIG
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(f"{p} is not valid JSON: {e}") from e


def report_workspace(path: str | Path, out: str | Path | None = None, *, stored: bool = False,
                     n_boot: int | None = None, seed: int | None = None,
                     timings: dict[str, float] | None = None) -> ReportFiles:
    """Analyse workspace ``path`` (or read its stored analysis) and write the report into
    ``out`` (default: the workspace). Settings default to the study's recorded ones."""
    from quantfid.analysis.run import run_all

    ws = Workspace(path, create=False)
    cfg = _study_config(ws)
    an = (cfg or {}).get("analysis") or {}
    n_boot = n_boot if n_boot is not None else int(an.get("n_boot", 2000))
    seed = seed if seed is not None else int(an.get("seed", 0))
    t0 = time.perf_counter()
    if stored:
        p = ws.path / ANALYSIS_FILE
        if not p.exists():
            raise QuantfidError(f"{p} does not exist: run without --stored to analyse the tables")
        try:
            analysis = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise FormatError(f"{p} is not valid JSON: {e}") from e
    else:
        from quantfid.analysis.selection import Selection

        k = an.get("k") or None  # 0 / absent: automatic
        sel = (cfg or {}).get("selection")  # a study's configured cohort
        select = None if not isinstance(sel, dict) else Selection.of(
            models=sel.get("models"), benchmarks=sel.get("benchmarks"),
            variants=None if sel.get("variants") is None else [tuple(v) for v in sel["variants"]])
        analysis = run_all(ws, k=k, band=float(an.get("band", 0.99)), n_boot=n_boot,
                           rng=np.random.default_rng(seed), select=select,
                           resolution=float(an.get("resolution", 0.05))).to_json()
    t_an = time.perf_counter() - t0
    prov = provenance.from_workspace(ws, seeds={"analysis": seed},
                                     timings={**(timings or {}), "analysis": t_an}, config=cfg)
    prov["analysis_source"] = "stored analysis.json" if stored else "re-run from the workspace tables"
    return write_report(Path(out) if out is not None else ws.path, analysis, prov)
