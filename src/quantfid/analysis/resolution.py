"""Resolution of a silent zone: can its benchmark see a drop that matters?

A silent zone means "indistinguishable from the reference at a resolution that matters".
Per score and zone rule, from the zone's members (needs per-prompt outcomes):

* ``discordance_rate``: the median over members of (G + L) / N on the score's N prompts
  (for ``"mean"`` the prompts of the benchmarks counted in the mean, each once);
* ``mde``: the paired minimum detectable effect at that rate (``power.mde_paired``: exact
  McNemar, power 0.8, two-sided alpha 0.05), an absolute accuracy difference;
  ``mde_relative`` = mde / the reference's accuracy on the same N prompts;
* ``status``:
  - ``"unresolved"`` when the zone holds every quant with that score (the benchmark tells
    none of them from the reference), or the MDE is undefined (no discordant prompts, or
    even a quant losing on every discordant prompt would go unseen), or
    ``mde_relative`` > ``threshold`` (default 0.05: a drop of 5 % of the reference's score
    would go unseen); ``reasons`` lists which;
  - ``"resolved"`` otherwise;
  - ``"empty"`` for a zone without members; ``"unknown"`` without per-prompt outcomes
    (table mode: no discordance to compute from).
* ``prompts_needed``: about how many prompts would bring the MDE down to ``threshold`` x
  the reference's accuracy at the same discordance rate (``power.prompts_needed``), None
  when that cannot be said (rate 0).

An unresolved zone gives no "still orders" / "does not order" finding in the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantfid.analysis.cohort import MEAN, Cohort
from quantfid.analysis.power import mde_paired, prompts_needed
from quantfid.analysis.silent_zone import SilentZone, flips

THRESHOLD = 0.05
POWER = 0.8
METHOD = ("median discordance (G + L) / N over the zone's members; exact McNemar MDE at power "
          "0.8, two-sided alpha 0.05; unresolved when the MDE exceeds the threshold fraction "
          "of the reference's accuracy on the same prompts, or the zone is the whole cohort")


@dataclass(frozen=True)
class ZoneResolution:
    score: str
    rule: str
    members: list[str]
    cohort_size: int
    status: str  # "resolved" | "unresolved" | "empty" | "unknown"
    reasons: list[str] = field(default_factory=list)
    n_prompts: int | None = None
    reference_accuracy: float | None = None
    discordance_rate: float | None = None
    discordant: int | None = None
    mde: float | None = None
    mde_relative: float | None = None
    threshold: float = THRESHOLD
    prompts_needed: int | None = None

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "rule": self.rule, "members": list(self.members),
                "n_members": len(self.members), "cohort_size": self.cohort_size,
                "status": self.status, "reasons": list(self.reasons),
                "n_prompts": self.n_prompts, "reference_accuracy": self.reference_accuracy,
                "discordance_rate": self.discordance_rate, "discordant": self.discordant,
                "mde": self.mde, "mde_relative": self.mde_relative,
                "threshold": self.threshold, "prompts_needed": self.prompts_needed}


def resolve(cohort: Cohort, zone: SilentZone, rule: str, *, threshold: float = THRESHOLD,
            alpha: float = 0.05) -> ZoneResolution:
    """The resolution of one zone rule of one score."""
    mask = zone.masks[rule]
    names = [q for q, m in zip(cohort.quants, mask, strict=True) if m]
    scored = int(np.isfinite(cohort.scores[zone.score]).sum())

    def make(status: str, **kw: Any) -> ZoneResolution:
        return ZoneResolution(score=zone.score, rule=rule, members=names, cohort_size=scored,
                              status=status, threshold=threshold, **kw)

    if not names:
        return make("empty")
    whole = len(names) >= scored
    pd = cohort.prompts
    if pd is None:
        return make("unresolved", reasons=["whole cohort"]) if whole else make("unknown")
    fl = flips(pd, zone.score)
    cols = pd.mean_columns() if zone.score == MEAN else pd.columns(zone.score)
    ref_acc = float(pd.ref_passed[cols].mean()) if cols.size else None
    rate = float(np.median((fl.gains[mask] + fl.losses[mask]) / fl.n))
    d, mde = mde_paired(fl.n, rate, POWER, alpha)
    rel = None if mde is None or not ref_acc else mde / ref_acc
    reasons = []
    if whole:
        reasons.append("whole cohort")
    if mde is None:
        reasons.append("no discordant prompts" if d == 0 else "no drop is detectable")
    elif rel is None or rel > threshold:
        reasons.append("mde above threshold")
    needed = None
    if ref_acc and (rel is None or rel > threshold):
        needed = prompts_needed(rate, threshold * ref_acc, POWER, alpha)
    return make("unresolved" if reasons else "resolved", reasons=reasons, n_prompts=fl.n,
                reference_accuracy=ref_acc, discordance_rate=rate, discordant=d, mde=mde,
                mde_relative=rel, prompts_needed=needed)


@dataclass(frozen=True)
class Resolution:
    by_score: dict[str, dict[str, ZoneResolution]]
    threshold: float = THRESHOLD

    def get(self, score: str, rule: str) -> ZoneResolution | None:
        return self.by_score.get(score, {}).get(rule)

    def to_json(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "power": POWER, "method": METHOD,
                "scores": {s: {r: z.to_json() for r, z in rules.items()}
                           for s, rules in self.by_score.items()}}


def resolve_all(cohort: Cohort, zones: dict[str, SilentZone], *, threshold: float = THRESHOLD,
                alpha: float = 0.05) -> Resolution:
    return Resolution({s: {r: resolve(cohort, z, r, threshold=threshold, alpha=alpha)
                           for r in z.masks} for s, z in zones.items()}, threshold)
