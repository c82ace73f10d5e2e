"""Volume and direction of a quant's disagreements with the reference.

Per quant and benchmark over the benchmark's N prompts: gains G (reference fails, quant
passes), losses L (reference passes, quant fails), volume V = G + L, direction
f = G / V (None when V = 0), and the identity

    score_q - score_ref = (G - L) / N = V (2 f - 1) / N

checked exactly in rational arithmetic (``fractions.Fraction``) from the two models' pass
counts on one side and the flip counts on the other (``identity_holds``).

Composite volume across the benchmarks counted in ``"mean"`` (``PromptData.mean_benchmarks``:
each prompt once), per quant: ``volume_sum`` = sum of V, and
``flip_rate_mean`` = mean over benchmarks of V / N; ``net_direction`` = (sum G - sum L) /
sum V (= 2 f - 1 pooled; None when no flips). Spearman(primary metric, volume) and
Spearman(primary metric, net direction) (net direction per benchmark = 2 f - 1) over the
full cohort and each silent zone (composite: the ``"mean"`` zones), in the correlation
entry shape plus ``"quantity"`` ("volume" | "net_direction") and ``"benchmark"``
(a benchmark or ``"composite"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from quantfid.analysis.cohort import MEAN, Cohort
from quantfid.analysis.correlation import Correlation, correlate_many
from quantfid.analysis.silent_zone import ZONE_RULES, SilentZone, flips


@dataclass(frozen=True)
class FlipRow:
    model: str
    benchmark: str
    n: int
    gains: int
    losses: int
    volume: int
    direction: float | None
    score_delta: float
    mcnemar_p: float
    identity_holds: bool

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "benchmark": self.benchmark, "n": self.n,
                "gains": self.gains, "losses": self.losses, "volume": self.volume,
                "direction": self.direction, "score_delta": self.score_delta,
                "mcnemar_p": self.mcnemar_p, "identity_holds": self.identity_holds}


def identity_holds(pass_q: int, pass_ref: int, gains: int, losses: int, n: int) -> bool:
    """score_q - score_ref == V (2 f - 1) / N, exactly (f = G / V; both sides 0 when V = 0)."""
    lhs = Fraction(pass_q - pass_ref, n)
    v = gains + losses
    if v == 0:
        return lhs == 0
    f = Fraction(gains, v)
    return lhs == Fraction(v) * (2 * f - 1) / n


@dataclass(frozen=True)
class Decomposition:
    rows: list[FlipRow]
    composite: list[dict[str, Any]]
    correlations: list[tuple[str, str, Correlation]]  # (quantity, benchmark, entry)

    @property
    def identity_holds(self) -> bool:
        return all(r.identity_holds for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "composite": self.composite,
                "identity_holds": self.identity_holds,
                "correlations": [{**c.to_json(), "quantity": q, "benchmark": b}
                                 for q, b, c in self.correlations]}


def decompose(cohort: Cohort, primary: int, zones: dict[str, SilentZone], *, n_boot: int,
              rng: np.random.Generator,
              cache: dict[int, np.ndarray] | None = None) -> Decomposition:
    pd = cohort.prompts
    if pd is None:
        return Decomposition([], [], [])
    nq = len(cohort.quants)
    rows: list[FlipRow] = []
    vols = np.zeros((len(pd.benchmarks), nq))
    rates = np.zeros((len(pd.benchmarks), nq))
    gain_tot = np.zeros(nq)
    loss_tot = np.zeros(nq)
    complete_all = np.ones(nq, dtype=bool)
    net: dict[str, np.ndarray] = {}
    for bi, b in enumerate(pd.benchmarks):
        fl = flips(pd, b)
        cols = pd.columns(b)
        pass_ref = int(pd.ref_passed[cols].sum())
        pass_q = pd.passed[:, cols].sum(axis=1)
        if b in pd.mean_benchmarks:
            complete_all &= fl.complete
        nb = np.full(nq, np.nan)
        for q in range(nq):
            if not fl.complete[q]:
                continue
            g, ls = int(fl.gains[q]), int(fl.losses[q])
            v = g + ls
            rows.append(FlipRow(cohort.quants[q], b, fl.n, g, ls, v, g / v if v else None,
                                (int(pass_q[q]) - pass_ref) / fl.n, float(fl.p[q]),
                                identity_holds(int(pass_q[q]), pass_ref, g, ls, fl.n)))
            nb[q] = (g - ls) / v if v else np.nan
        vols[bi] = np.where(fl.complete, fl.gains + fl.losses, np.nan)
        rates[bi] = vols[bi] / fl.n
        if b in pd.mean_benchmarks:
            gain_tot += fl.gains
            loss_tot += fl.losses
        net[b] = nb
    keep = [pd.benchmarks.index(b) for b in pd.mean_benchmarks]
    vol_sum = np.where(complete_all, vols[keep].sum(axis=0), np.nan)
    rate_mean = np.where(complete_all, rates[keep].mean(axis=0), np.nan)
    tot = gain_tot + loss_tot
    with np.errstate(invalid="ignore", divide="ignore"):
        net_all = np.where(complete_all & (tot > 0), (gain_tot - loss_tot) / tot, np.nan)
    composite = [{"model": cohort.quants[q],
                  "volume_sum": None if not complete_all[q] else int(vol_sum[q]),
                  "flip_rate_mean": None if not complete_all[q] else float(rate_mean[q]),
                  "gains": int(gain_tot[q]), "losses": int(loss_tot[q]),
                  "net_direction": None if not np.isfinite(net_all[q]) else float(net_all[q])}
                 for q in range(nq)]
    corrs: list[tuple[str, str, Correlation]] = []
    if not 0 <= primary < len(cohort.variants):
        return Decomposition(rows, composite, corrs)
    x = cohort.values[primary][None, :]
    var = cohort.variants[primary]
    targets: list[tuple[str, str, np.ndarray]] = []
    for bi, b in enumerate(pd.benchmarks):
        targets += [("volume", b, vols[bi]), ("net_direction", b, net[b])]
    targets += [("volume", "composite", vol_sum), ("net_direction", "composite", net_all)]
    for quantity, b, y in targets:
        zone = zones.get(MEAN if b == "composite" else b)
        subsets: list[tuple[str, str | None, np.ndarray | None]] = [("full", None, None)]
        if zone is not None:
            subsets += [("silent", r, zone.masks[r]) for r in ZONE_RULES if r in zone.masks]
        for subset, rule, member in subsets:
            rs = correlate_many(x, y, n_boot=n_boot, rng=rng, member=member, cache=cache)[0]
            corrs.append((quantity, b, Correlation.of(rs, metric=var.stat, score=quantity,
                                                     subset=subset, rule=rule,
                                                     corpus=var.corpus, ctx=var.ctx)))
    return Decomposition(rows, composite, corrs)
