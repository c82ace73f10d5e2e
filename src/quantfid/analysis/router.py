"""Router: can per-prompt KLD pick the better of two quants?

For every unordered pair of quants (never the reference), on the prompts where exactly one
of the two passes (``disagree``) and both have a per-prompt KLD, route to the quant with the
lower KLD; the route is ``correct`` if that quant passed. Prompts where both KLDs are equal
are ``ties``: reported, and left out of ``decided`` and of the accuracy (correct / decided).

* Per pair (``pairs``): the exact (Clopper-Pearson) 95 % CI and the exact two-sided binomial
  test against 50 % (``method`` = ``"exact"``): one pair's decisions are on distinct prompts.
* Pooled over pairs (``pooled``: the benchmarks counted in ``"mean"``, each prompt once;
  ``per_benchmark``: each benchmark; ``pooled_silent``: only the pairs whose two quants are
  both in the silent zone ``silent_rule`` of the ``"mean"`` score): pairs share prompts, so
  the CI and p come from a cluster bootstrap over prompts (``cluster.py``: resample prompts
  within benchmarks, keep every pair's decisions on them; studentized interval and p against
  0.5; ``method`` = ``"cluster-bootstrap-t"``, or a stated fallback where the bootstrap is
  degenerate). One draw serves all pooled targets. A pooled target made of a single pair is
  that pair's exact result (its decisions are on distinct prompts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis.binomial import clopper_pearson, sign_test_p
from quantfid.analysis.cluster import ClusterCI, cluster_cis
from quantfid.analysis.cohort import Cohort

METHOD = ("route to lower per-prompt KLD on prompts where exactly one passes; ties excluded; "
          "pairs: Clopper-Pearson CI and exact binomial test vs 0.5; pooled: studentized cluster "
          "bootstrap over prompts (within benchmarks), CI and p vs 0.5")


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
    method: str = "exact"

    @staticmethod
    def of(label: str, disagree: int, ties: int, correct: int) -> RouterStat:
        """Exact CI and test (one pair)."""
        decided = disagree - ties
        if decided == 0:
            return RouterStat(label, disagree, ties, 0, 0, None, None, None, None)
        lo, hi = clopper_pearson(correct, decided)
        return RouterStat(label, disagree, ties, decided, correct, correct / decided,
                          float(lo), float(hi), float(sign_test_p(correct, decided)))

    def to_json(self) -> dict[str, Any]:
        return {"disagree": self.disagree, "ties": self.ties, "decided": self.decided,
                "correct": self.correct, "accuracy": self.accuracy, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "p": self.p, "method": self.method}


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


@dataclass(frozen=True)
class Decisions:
    """Every pair's decisions: ``pair_counts`` (n_pairs, 3) = disagree, ties, correct;
    ``per_prompt`` (3, P) and ``per_prompt_member`` (3, P): the same summed over all pairs /
    over the pairs inside ``member``."""

    ia: np.ndarray
    ib: np.ndarray
    pair_counts: np.ndarray
    per_prompt: np.ndarray
    per_prompt_member: np.ndarray


def decisions(passed: np.ndarray, kld: np.ndarray, ok: np.ndarray,
              member: np.ndarray | None = None) -> Decisions:
    """Route every pair of rows of ``passed``/``kld``/``ok`` (Q, P) on every prompt."""
    nq, n_p = passed.shape
    ia: list[int] = []
    ib: list[int] = []
    counts: list[np.ndarray] = []
    per = np.zeros((3, n_p), dtype=np.int64)
    per_m = np.zeros((3, n_p), dtype=np.int64)
    for a in range(nq - 1):
        b = np.arange(a + 1, nq)
        valid = ok[a][None, :] & ok[b]  # (nb, P)
        dis = valid & (passed[a][None, :] != passed[b])
        ties = dis & (kld[a][None, :] == kld[b])
        pick_a = kld[a][None, :] < kld[b]
        correct = dis & ~ties & np.where(pick_a, passed[a][None, :], passed[b])
        ia += [a] * b.size
        ib += b.tolist()
        counts.append(np.stack([dis.sum(axis=1), ties.sum(axis=1), correct.sum(axis=1)], axis=1))
        block = np.stack([dis, ties, correct])  # (3, nb, P)
        per += block.sum(axis=1)
        if member is not None and member[a]:
            per_m += block[:, member[b]].sum(axis=1)
    return Decisions(np.array(ia, dtype=np.int64), np.array(ib, dtype=np.int64),
                     np.concatenate(counts) if counts else np.zeros((0, 3), dtype=np.int64),
                     per, per_m)


def _pooled(label: str, counts: np.ndarray, ci: ClusterCI) -> RouterStat:
    """A pooled stat from summed counts (disagree, ties, correct) and its cluster interval."""
    dis, ties, correct = (int(x) for x in counts)
    decided = dis - ties
    if decided == 0:
        return RouterStat(label, dis, ties, 0, 0, None, None, None, None, ci.method)
    return RouterStat(label, dis, ties, decided, correct, correct / decided, ci.ci_low,
                      ci.ci_high, ci.p, ci.method)


def route(cohort: Cohort, silent: np.ndarray | None = None, silent_rule: str | None = None, *,
          n_boot: int = 2000, rng: np.random.Generator | None = None) -> RouterResult:
    """Route every pair; ``silent`` (Q,) bool marks the zone for ``pooled_silent``."""
    pd = cohort.prompts
    if pd is None or len(cohort.quants) < 2 or not np.isfinite(pd.kld).any():
        return RouterResult(None, [], [])
    rng = np.random.default_rng(0) if rng is None else rng
    dec = decisions(pd.passed, pd.kld, pd.known & np.isfinite(pd.kld), silent)
    cnt = dec.pair_counts
    decided = cnt[:, 0] - cnt[:, 1]
    lo, hi = clopper_pearson(cnt[:, 2], decided)
    p = sign_test_p(cnt[:, 2], decided)
    pairs: list[tuple[str, str, RouterStat]] = []
    for i, (a, b_) in enumerate(zip(dec.ia, dec.ib, strict=True)):
        d = int(decided[i])
        label = f"{cohort.quants[a]}|{cohort.quants[b_]}"
        stat = (RouterStat(label, int(cnt[i, 0]), int(cnt[i, 1]), d, int(cnt[i, 2]),
                           int(cnt[i, 2]) / d, float(lo[i]), float(hi[i]), float(p[i])) if d
                else RouterStat.of(label, int(cnt[i, 0]), int(cnt[i, 1]), 0))
        pairs.append((cohort.quants[a], cohort.quants[b_], stat))
    in_mean = np.zeros(pd.bench.size, dtype=bool)
    in_mean[pd.mean_columns()] = True
    masks = [in_mean, *(pd.bench == k for k in range(len(pd.benchmarks)))]
    sources = [dec.per_prompt] * len(masks)
    if silent is not None:
        masks.append(in_mean)
        sources.append(dec.per_prompt_member)
    correct = np.stack([np.where(m, s[2], 0) for m, s in zip(masks, sources, strict=True)])
    decided_pp = np.stack([np.where(m, s[0] - s[1], 0) for m, s in zip(masks, sources, strict=True)])
    cis = cluster_cis(correct, decided_pp, pd.bench, n_boot, rng)
    labels = ["pooled", *pd.benchmarks] + (["pooled_silent"] if silent is not None else [])
    n_pairs = [len(dec.ia)] * (1 + len(pd.benchmarks))
    if silent is not None:
        n_pairs.append(int((silent[dec.ia] & silent[dec.ib]).sum()))
    stats = [RouterStat.of(lab, *map(int, np.where(m, s, 0).sum(axis=1))) if k == 1 else
             _pooled(lab, np.where(m, s, 0).sum(axis=1), ci) for lab, m, s, ci, k in
             zip(labels, masks, sources, cis, n_pairs, strict=True)]
    return RouterResult(stats[0], stats[1:1 + len(pd.benchmarks)], pairs,
                        stats[-1] if silent is not None else None, silent_rule)
