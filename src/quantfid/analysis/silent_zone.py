"""Silent zones: the quants whose score cannot be told from the reference's.

Rules, per score (each benchmark and ``"mean"``), reported side by side:

* ``paired``: the exact McNemar test (sign test on the discordant prompts: gains G vs
  losses L, two-sided) of the quant's per-prompt outcomes against the reference's is not
  significant at ``alpha`` = 5 %. For ``"mean"`` all prompts of the benchmarks counted
  in the mean are pooled, each once (``<task>:acc_norm`` beside ``<task>`` is left out). Needs per-prompt outcomes (None in table mode).
* ``band``: score >= band x the reference's score (band = 0.99 by default).
* ``lowest_k``: the k best quants by the primary fidelity metric (lowest for
  lower-is-better metrics, highest for ``same_top1``), among quants with both a metric
  value and a score; k = the given k, else the size of the ``paired`` zone, else of the
  ``band`` zone.

Members are listed in cohort order; the reference is never a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.binomial import sign_test_p
from quantfid.analysis.cohort import MEAN, Cohort, PromptData
from quantfid.analysis.correlation import direction

ZONE_RULES: tuple[str, ...] = ("paired", "band", "lowest_k")


@dataclass(frozen=True)
class Flips:
    """Gains / losses / exact McNemar p of every quant against the reference on one score."""

    gains: np.ndarray
    losses: np.ndarray
    n: int
    p: np.ndarray
    complete: np.ndarray  # quants with every prompt of the score


def flips(pd: PromptData, score: str) -> Flips:
    cols = pd.mean_columns() if score == MEAN else pd.columns(score)
    ref = pd.ref_passed[cols]
    q = pd.passed[:, cols]
    complete = np.asarray(pd.known[:, cols].all(axis=1))
    gains = (q & ~ref).sum(axis=1)
    losses = (~q & ref).sum(axis=1)
    return Flips(gains, losses, int(cols.size), sign_test_p(gains, gains + losses), complete)


@dataclass(frozen=True)
class SilentZone:
    score: str
    paired: list[str] | None
    band: list[str]
    lowest_k: list[str]
    k: int
    band_threshold: float | None
    masks: dict[str, np.ndarray]

    def to_json(self, with_paired: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if with_paired:
            out["paired"] = self.paired
        out["band"] = self.band
        out["lowest_k"] = self.lowest_k
        return out


def silent_zone(cohort: Cohort, score: str, primary: int, *, band: float = 0.99,
                k: int | None = None, alpha: float = 0.05) -> SilentZone:
    names = np.array(cohort.quants, dtype=object)
    s = cohort.scores[score]
    has = np.isfinite(s)
    masks: dict[str, np.ndarray] = {}
    paired: list[str] | None = None
    if cohort.prompts is not None:
        fl = flips(cohort.prompts, score)
        m = fl.complete & has & (fl.p >= alpha)
        masks["paired"] = m
        paired = list(names[m])
    ref = cohort.ref_scores.get(score)
    thr = None if ref is None else band * ref
    bm = has & (s >= thr) if thr is not None else np.zeros(len(names), dtype=bool)
    masks["band"] = bm
    if k is None:
        k = len(paired) if paired is not None else int(bm.sum())
    if 0 <= primary < cohort.values.shape[0]:
        x = cohort.values[primary]
        sign = direction(cohort.variants[primary].stat)
    else:  # no fidelity metric: lowest_k is empty
        x, sign = np.full(len(names), np.nan), -1
    ok = np.flatnonzero(np.isfinite(x) & has)
    order = ok[np.argsort(-sign * x[ok], kind="stable")]
    lk = np.zeros(len(names), dtype=bool)
    lk[order[:k]] = True
    masks["lowest_k"] = lk
    return SilentZone(score, paired, list(names[bm]), list(names[lk]), k, thr, masks)
