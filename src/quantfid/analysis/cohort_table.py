"""Section 1 of the analysis JSON: one row per quant (sizes, every variant with its interval,
CI method and noise-floor flag, every score, backend and numerics) and the cohort's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.cohort import Cohort


def _num(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


@dataclass(frozen=True)
class CohortTable:
    """Section 1: one row per quant (and the reference's scores)."""

    cohort: Cohort
    settings: dict[str, Any]
    benchmarks_info: list[dict[str, Any]]

    def _metrics(self, q: int, overlaps: dict[str, np.ndarray | None]) -> dict[str, Any]:
        c = self.cohort
        out = {}
        for v, var in enumerate(c.variants):
            ci = c.metric_ci.get(var.key)
            meth = c.metric_ci_method.get(var.key)
            ov = overlaps.get(var.key)
            out[var.key] = {"value": _num(c.values[v, q]),
                            "ci_low": _num(ci[0][q]) if ci else None,
                            "ci_high": _num(ci[1][q]) if ci else None,
                            "ci_method": meth[q] if meth else None,
                            "within_noise_floor": None if ov is None or not np.isfinite(ov[q])
                            else bool(ov[q])}
        return out

    def to_json(self) -> dict[str, Any]:
        c = self.cohort
        overlaps = {v.key: c.floor_overlap(v.key) for v in c.variants}
        rows = []
        for q, name in enumerate(c.quants):
            scores = {}
            for s, arr in c.scores.items():
                sci = c.score_ci.get(s)
                scores[s] = {"n": c.score_n.get(s), "accuracy": _num(arr[q]),
                             "ci_low": _num(sci[0][q]) if sci else None,
                             "ci_high": _num(sci[1][q]) if sci else None}
            rows.append({"model": name,
                         "bits_per_weight": c.bits_per_weight[q] if c.bits_per_weight else None,
                         "bytes": c.bytes[q] if c.bytes else None,
                         "numerics": dict(c.numerics[q]) if c.numerics else {},
                         "metrics": self._metrics(q, overlaps), "scores": scores})
        return {"reference": c.reference, "quants": list(c.quants),
                "variants": [v.to_json() for v in c.variants],
                "scores": list(c.scores), "reference_scores": dict(c.ref_scores),
                "benchmarks": self.benchmarks_info, "settings": self.settings,
                "noise_floor": {k: dict(v) for k, v in c.noise_floor.items()},
                "numerics": {"reference": dict(c.reference_numerics),
                             "warnings": list(c.numerics_warnings)},
                "selection": c.selection.to_json(),
                "rows": rows, "warnings": list(c.warnings)}
