"""Robustness: does the (silent-zone) result hold for every measurement variant?

Every correlation entry (each variant x score x subset/rule) gets a Benjamini-Hochberg
adjusted p-value ``p_bh``; the BH family is one (score, subset, rule) group across all
measurement variants (the question "does any variant see a link here?"). ``summary`` has
one line per family: how many variants have a defined rho, the smallest / median / largest
ORIENTED rho (rho for lower-is-better metrics, -rho for ``same_top1``, so negative always
means "the metric agrees with the score"), how many have p < alpha before and after BH, and
how many have a bootstrap CI that excludes 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.correlation import Correlation, direction
from quantfid.analysis.fdr import bh_adjust

FAMILY = "one (score, subset, rule) group across all measurement variants"


@dataclass(frozen=True)
class Robustness:
    rows: list[tuple[Correlation, float | None]]
    alpha: float = 0.05

    def summary(self) -> list[dict[str, Any]]:
        fams: dict[tuple[str, str, str | None], list[tuple[Correlation, float | None]]] = {}
        for c, q in self.rows:
            fams.setdefault((c.score, c.subset, c.rule), []).append((c, q))
        out = []
        for (score, subset, rule), items in fams.items():
            rhos = np.array([-direction(c.metric) * c.rho for c, _ in items if c.rho is not None],
                            dtype=float)
            out.append({
                "score": score, "subset": subset, "rule": rule, "n_variants": len(items),
                "n_defined": int(rhos.size),
                "oriented_rho_min": float(rhos.min()) if rhos.size else None,
                "oriented_rho_median": float(np.median(rhos)) if rhos.size else None,
                "oriented_rho_max": float(rhos.max()) if rhos.size else None,
                "n_p_below_alpha": sum(1 for c, _ in items if c.p is not None and c.p < self.alpha),
                "n_bh_below_alpha": sum(1 for _, q in items if q is not None and q < self.alpha),
                "n_ci_excludes_zero": sum(1 for c, _ in items if c.ci_low is not None
                                          and c.ci_high is not None
                                          and (c.ci_low > 0 or c.ci_high < 0)),
            })
        return out

    def to_json(self) -> dict[str, Any]:
        return {"family": FAMILY, "alpha": self.alpha,
                "rows": [{**c.to_json(), "p_bh": q} for c, q in self.rows],
                "summary": self.summary()}


def robustness(entries: list[Correlation], alpha: float = 0.05) -> Robustness:
    fams: dict[tuple[str, str, str | None], list[int]] = {}
    for i, c in enumerate(entries):
        fams.setdefault((c.score, c.subset, c.rule), []).append(i)
    adj: list[float | None] = [None] * len(entries)
    for idx in fams.values():
        qs = bh_adjust([entries[i].p for i in idx])
        for i, q in zip(idx, qs, strict=True):
            adj[i] = q
    return Robustness([(c, adj[i]) for i, c in enumerate(entries)], alpha)
