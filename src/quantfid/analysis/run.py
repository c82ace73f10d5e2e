"""``run_all``: every analysis of a workspace (issue 5, 1-7) in one result.

``k`` (the lowest-k rule's size): None or 0 = automatic (the size of the paired zone, else
of the band zone), per score; a positive k is used as given. ``resolution``: the fraction
of the reference's score a zone must be able to see (``resolution.py``, default 0.05).
``select``: a ``Selection`` (``selection.py``) restricting the analysis to the configured
quants, (corpus, ctx) pairs and benchmarks; None = everything in the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.cohort import MEAN, Cohort, load_cohort
from quantfid.analysis.cohort_table import CohortTable
from quantfid.analysis.correlation import Correlation, correlate_many
from quantfid.analysis.decomposition import Decomposition, decompose
from quantfid.analysis.failure import FailureResult, failure_prediction
from quantfid.analysis.power import mde
from quantfid.analysis.resolution import THRESHOLD, Resolution, resolve_all
from quantfid.analysis.robustness import Robustness, robustness
from quantfid.analysis.router import RouterResult, route
from quantfid.analysis.selection import Selection
from quantfid.analysis.silent_zone import ZONE_RULES, SilentZone, flips, silent_zone
from quantfid.errors import QuantfidError
from quantfid.store.workspace import Workspace

DEFAULT_SEED = 0


def zones_for(cohort: Cohort, primary: int, *, band: float, k: int | None,
              alpha: float) -> dict[str, SilentZone]:
    return {s: silent_zone(cohort, s, primary, band=band, k=k, alpha=alpha) for s in cohort.scores}


def correlations(cohort: Cohort, zones: dict[str, SilentZone], *, n_boot: int,
                 rng: np.random.Generator,
                 cache: dict[int, np.ndarray] | None = None) -> list[Correlation]:
    """Each variant x each score x (full, each silent rule); score-major, then subset, variant."""
    out: list[Correlation] = []
    if not cohort.variants:
        return out
    for score, y in cohort.scores.items():
        subsets: list[tuple[str, str | None, np.ndarray | None]] = [("full", None, None)]
        zone = zones.get(score)
        if zone is not None:
            subsets += [("silent", r, zone.masks[r]) for r in ZONE_RULES if r in zone.masks]
        for subset, rule, member in subsets:
            stats = correlate_many(cohort.values, y, n_boot=n_boot, rng=rng, member=member,
                                   cache=cache)
            out += [Correlation.of(rs, metric=v.stat, score=score, subset=subset, rule=rule,
                                   corpus=v.corpus, ctx=v.ctx)
                    for rs, v in zip(stats, cohort.variants, strict=True)]
    return out


@dataclass(frozen=True)
class AnalysisResult:
    cohort: CohortTable
    correlations: list[Correlation]
    silent_zone: dict[str, SilentZone]
    resolution: Resolution
    robustness: Robustness
    decomposition: Decomposition
    failure_prediction: FailureResult
    router: RouterResult
    primary: str

    def to_json(self) -> dict[str, Any]:
        return {"cohort": self.cohort.to_json(),
                "correlations": [c.to_json() for c in self.correlations],
                "silent_zone": {s: z.to_json(with_paired=True) for s, z in self.silent_zone.items()},
                "resolution": self.resolution.to_json(),
                "robustness": self.robustness.to_json(),
                "decomposition": self.decomposition.to_json(),
                "failure_prediction": self.failure_prediction.to_json(),
                "router": self.router.to_json()}


def automatic_k(k: int | None) -> int | None:
    """None for automatic (k None or 0); a positive k as given; a negative k is an error."""
    if k is None or k == 0:
        return None
    if k < 0:
        raise QuantfidError(f"k must be a positive number of quants, or 0 for automatic; got {k}")
    return int(k)


def analyze_cohort(cohort: Cohort, *, k: int | None = None, band: float = 0.99,
                   n_boot: int = 10000, rng: np.random.Generator | None = None,
                   metric: str = "kld_mean", alpha: float = 0.05,
                   resolution: float = THRESHOLD) -> AnalysisResult:
    rng = np.random.default_rng(DEFAULT_SEED) if rng is None else rng
    k = automatic_k(k)
    primary = cohort.variant(metric) if cohort.variants else -1
    zones = zones_for(cohort, primary, band=band, k=k, alpha=alpha)
    res = resolve_all(cohort, zones, threshold=resolution, alpha=alpha)
    cache: dict[int, np.ndarray] = {}
    corr = correlations(cohort, zones, n_boot=n_boot, rng=rng, cache=cache)
    bench_info = []
    if cohort.prompts is not None:
        for s in [*cohort.prompts.benchmarks, MEAN]:
            fl = flips(cohort.prompts, s)
            rates = np.where(fl.complete, (fl.gains + fl.losses) / fl.n, np.nan)
            bench_info.append(mde(s, fl.n, cohort.ref_scores.get(s), rates, 0.8, alpha).to_json())
    settings: dict[str, Any] = {
        "metric": metric, "primary": cohort.variants[primary].key if cohort.variants else None,
        "band": band, "k": {s: z.k for s, z in zones.items()}, "k_automatic": k is None,
        "band_threshold": {s: z.band_threshold for s, z in zones.items()},
        "alpha": alpha, "n_boot": n_boot, "resolution_threshold": resolution}
    dec = decompose(cohort, primary, zones, n_boot=n_boot, rng=rng, cache=cache)
    return AnalysisResult(
        cohort=CohortTable(cohort, settings, bench_info), correlations=corr, silent_zone=zones,
        resolution=res, robustness=robustness(corr, alpha), decomposition=dec,
        failure_prediction=failure_prediction(cohort, n_boot=n_boot, rng=rng),
        router=_route(cohort, zones, n_boot, rng), primary=settings["primary"] or metric)


def _route(cohort: Cohort, zones: dict[str, SilentZone], n_boot: int,
           rng: np.random.Generator) -> RouterResult:
    zone = zones.get(MEAN)
    if zone is None:
        return route(cohort, n_boot=n_boot, rng=rng)
    rule = "paired" if "paired" in zone.masks else "band"
    return route(cohort, zone.masks[rule], rule, n_boot=n_boot, rng=rng)


def run_all(ws: Workspace, *, k: int | None = None, band: float = 0.99, n_boot: int = 10000,
            rng: np.random.Generator | None = None, metric: str = "kld_mean",
            alpha: float = 0.05, resolution: float = THRESHOLD,
            select: Selection | None = None) -> AnalysisResult:
    """Every analysis of the workspace's (selected) cohort; ``rng`` defaults to a generator
    seeded 0; ``k`` None or 0 = automatic; ``select`` None = the whole workspace."""
    return analyze_cohort(load_cohort(ws, select or Selection()), k=k, band=band,
                          n_boot=n_boot, rng=rng, metric=metric, alpha=alpha,
                          resolution=resolution)
