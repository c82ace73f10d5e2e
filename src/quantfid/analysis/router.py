"""Router: can per-prompt KLD pick the better of two quants?

For every unordered pair of quants (never the reference), on the prompts where exactly one
of the two passes (``disagree``) and both have a per-prompt KLD, route to the quant with the
lower KLD; the route is ``correct`` if that quant passed. Prompts where both KLDs are equal
are ``ties``: reported, and left out of ``decided`` and of the accuracy. ``accuracy`` =
correct / decided, with the exact (Clopper-Pearson) 95 % CI and the exact two-sided
binomial test against 50 % (``p``). Reported per pair (all benchmarks' prompts together),
per benchmark (pooled over pairs) and pooled over everything. Pooled tests treat every
(pair, prompt) decision as independent, which they are not (pairs share prompts and
quants), so pooled p-values are optimistic; the per-pair results are exact.
``pooled_silent`` pools only the pairs whose two quants are both in the silent zone
``silent_rule`` of the ``"mean"`` score (``paired``; ``band`` without per-prompt data), where
quants cannot be told apart by score and a level difference in KLD cannot do the routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.binomial import clopper_pearson, sign_test_p
from quantfid.analysis.cohort import Cohort

METHOD = ("route to lower per-prompt KLD on prompts where exactly one passes; ties excluded; "
          "Clopper-Pearson CI; exact two-sided binomial test vs 0.5")


@dataclass(frozen=True)
class RouterStat:
    label: str  # "pooled", a benchmark name, or "a|b" for a pair
    disagree: int
    ties: int
    decided: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None

    @staticmethod
    def of(label: str, disagree: int, ties: int, correct: int) -> RouterStat:
        decided = disagree - ties
        if decided == 0:
            return RouterStat(label, disagree, ties, 0, 0, None, None, None, None)
        lo, hi = clopper_pearson(correct, decided)
        return RouterStat(label, disagree, ties, decided, correct, correct / decided,
                          float(lo), float(hi), float(sign_test_p(correct, decided)))

    def to_json(self) -> dict[str, Any]:
        return {"disagree": self.disagree, "ties": self.ties, "decided": self.decided,
                "correct": self.correct, "accuracy": self.accuracy, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p": self.p}


@dataclass(frozen=True)
class RouterResult:
    pooled: RouterStat | None
    per_benchmark: list[RouterStat]
    pairs: list[tuple[str, str, RouterStat]]
    pooled_silent: RouterStat | None = None
    silent_rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"pooled": None if self.pooled is None else self.pooled.to_json(),
                "pooled_silent": None if self.pooled_silent is None else self.pooled_silent.to_json(),
                "silent_rule": self.silent_rule,
                "per_benchmark": [{"benchmark": s.label, **s.to_json()} for s in self.per_benchmark],
                "pairs": [{"a": a, "b": b, **s.to_json()} for a, b, s in self.pairs],
                "method": METHOD}


def route(cohort: Cohort, silent: np.ndarray | None = None,
          silent_rule: str | None = None) -> RouterResult:
    """Route every pair; ``silent`` (Q,) bool marks the zone for ``pooled_silent``."""
    pd = cohort.prompts
    if pd is None or len(cohort.quants) < 2 or not np.isfinite(pd.kld).any():
        return RouterResult(None, [], [])
    nq = len(cohort.quants)
    ok = pd.known & np.isfinite(pd.kld)
    nb = len(pd.benchmarks)
    tot = np.zeros((nb, 3), dtype=np.int64)  # disagree, ties, correct per benchmark
    ia: list[int] = []
    ib: list[int] = []
    counts: list[np.ndarray] = []
    for a in range(nq - 1):
        b = np.arange(a + 1, nq)
        valid = ok[a][None, :] & ok[b]
        dis = valid & (pd.passed[a][None, :] != pd.passed[b])
        ties = dis & (pd.kld[a][None, :] == pd.kld[b])
        pick_a = pd.kld[a][None, :] < pd.kld[b]
        correct = dis & ~ties & np.where(pick_a, pd.passed[a][None, :], pd.passed[b])
        ia += [a] * b.size
        ib += b.tolist()
        counts.append(np.stack([dis.sum(axis=1), ties.sum(axis=1), correct.sum(axis=1)], axis=1))
        for k in range(nb):
            sel = pd.bench == k
            tot[k] += [int(dis[:, sel].sum()), int(ties[:, sel].sum()), int(correct[:, sel].sum())]
    cnt = np.concatenate(counts)
    decided = cnt[:, 0] - cnt[:, 1]
    lo, hi = clopper_pearson(cnt[:, 2], decided)
    p = sign_test_p(cnt[:, 2], decided)
    pairs: list[tuple[str, str, RouterStat]] = []
    for i, (a, b_) in enumerate(zip(ia, ib, strict=True)):
        d = int(decided[i])
        label = f"{cohort.quants[a]}|{cohort.quants[b_]}"
        stat = (RouterStat(label, int(cnt[i, 0]), int(cnt[i, 1]), d, int(cnt[i, 2]),
                           int(cnt[i, 2]) / d, float(lo[i]), float(hi[i]), float(p[i])) if d
                else RouterStat.of(label, int(cnt[i, 0]), int(cnt[i, 1]), 0))
        pairs.append((cohort.quants[a], cohort.quants[b_], stat))
    per_bench = [RouterStat.of(pd.benchmarks[k], *map(int, tot[k])) for k in range(nb)]
    pooled = RouterStat.of("pooled", *map(int, tot.sum(axis=0)))
    pooled_silent = None
    if silent is not None:
        inside = silent[np.array(ia, dtype=np.int64)] & silent[np.array(ib, dtype=np.int64)]
        s = cnt[inside].sum(axis=0) if inside.any() else np.zeros(3, dtype=np.int64)
        pooled_silent = RouterStat.of("pooled_silent", int(s[0]), int(s[1]), int(s[2]))
    return RouterResult(pooled, per_bench, pairs, pooled_silent, silent_rule)
