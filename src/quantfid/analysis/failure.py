"""Failure prediction: is a quant's per-prompt KLD higher on the prompts it fails?

Per quant (never the reference) and subset (``"all"`` prompts with an outcome and a per-prompt
KLD, ``"ref_passed"``: only those the reference passed), one row per benchmark and two pooled
rows (``benchmark`` = ``"stratified"`` and ``"pooled"``). Benchmarks differ in base rate and
in per-prompt KLD level, so pooling their prompts mixes composition with signal (Simpson's
paradox); the stratified row is the one to read, the pooled one is a labelled extra.

* Per benchmark: ``ratio`` = geometric mean of KLD over failed prompts / over passed prompts
  = exp(L_b), L_b = mean ln KLD_failed - mean ln KLD_passed. A KLD <= ``KLD_FLOOR`` = 1e-10
  nats is raised to it before the logarithm (``n_floored`` counts them). ``auroc`` =
  P(KLD_failed > KLD_passed) + P(tie) / 2 = U / (n_f n_p); ``p``: two-sided Mann-Whitney
  (as ``scipy.stats.mannwhitneyu``, method "auto": ``van_elteren.mann_whitney``).
* ``"stratified"`` over the benchmarks counted in ``"mean"`` (each prompt once) that have both
  failed and passed prompts: ratio = exp(sum_b w_b L_b / sum_b w_b) and auroc = sum_b w_b
  AUROC_b / sum_b w_b with w_b = n_f,b n_p,b / (n_b + 1), n_b = n_f,b + n_p,b (van Elteren's
  weights: the rank-sum
  statistic below is this weighted AUROC up to constants; about the inverse variance of
  L_b); ``p``: van Elteren's stratified rank test (``van_elteren``).
* ``"pooled"``: the same prompts pooled as one sample (ratio, AUROC, Mann-Whitney), unstratified.
* CIs (``ci_low``/``ci_high``): seeded percentile bootstrap 95 % intervals, resampling prompts
  with replacement *within each benchmark* (benchmark sizes are fixed by design); one draw
  for every quant and subset: per block of up to 1,000 resamples, for each benchmark in
  order, ``rng.integers(0, n_b, (block, n_b))``. A resample without failed or passed prompts
  in a benchmark leaves that benchmark out of that resample's stratified estimate (weights
  from the resample's counts) and gives no per-benchmark value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis import bootstrap
from quantfid.analysis.cohort import Cohort, PromptData
from quantfid.analysis.van_elteren import mann_whitney, van_elteren

KLD_FLOOR = 1e-10
SUBSETS: tuple[str, ...] = ("all", "ref_passed")
STRATIFIED, POOLED = "stratified", "pooled"
METHOD = ("per benchmark: geometric-mean ratio failed/passed (KLD floored at 1e-10 nats), "
          "AUROC = U/(n_f n_p), Mann-Whitney two-sided; stratified: weights n_f n_p/(n + 1) "
          "per benchmark, van Elteren test; pooled: all prompts as one sample (unstratified); "
          "CIs: percentile bootstrap resampling prompts within benchmarks")
BLOCK = 1000


@dataclass(frozen=True)
class FailurePrediction:
    model: str
    subset: str
    n_failed: int
    n_passed: int
    gm_failed: float | None
    gm_passed: float | None
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    auroc: float | None
    mw_u: float | None
    p: float | None
    n_floored: int
    benchmark: str = POOLED
    p_method: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "subset": self.subset, "benchmark": self.benchmark,
                "n_failed": self.n_failed, "n_passed": self.n_passed,
                "gm_failed": self.gm_failed, "gm_passed": self.gm_passed, "ratio": self.ratio,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "auroc": self.auroc,
                "mw_u": self.mw_u, "p": self.p, "p_method": self.p_method,
                "n_floored": self.n_floored}


def _median(v: list[float]) -> float | None:
    return float(np.median(v)) if v else None


@dataclass(frozen=True)
class FailureResult:
    rows: list[FailurePrediction]

    def summary(self) -> dict[str, Any]:
        """Per subset, over quants: the stratified ratio and AUROC (median, range, how many
        p < 0.05), the unstratified pooled medians, and per-benchmark medians."""
        out: dict[str, Any] = {}
        for s in SUBSETS:
            rs = [r for r in self.rows if r.subset == s and r.benchmark == STRATIFIED
                  and r.ratio is not None]
            ratios = [float(r.ratio) for r in rs if r.ratio is not None]
            pooled = [r for r in self.rows if r.subset == s and r.benchmark == POOLED]
            benches = list(dict.fromkeys(r.benchmark for r in self.rows
                                         if r.benchmark not in (STRATIFIED, POOLED)))
            out[s] = {
                "n_models": len(rs), "ratio_median": _median(ratios),
                "ratio_min": min(ratios) if ratios else None,
                "ratio_max": max(ratios) if ratios else None,
                "auroc_median": _median([r.auroc for r in rs if r.auroc is not None]),
                "n_p_below_0_05": sum(1 for r in rs if r.p is not None and r.p < 0.05),
                "pooled_ratio_median": _median([r.ratio for r in pooled if r.ratio is not None]),
                "pooled_auroc_median": _median([r.auroc for r in pooled if r.auroc is not None]),
                "per_benchmark": {b: {
                    "ratio_median": _median([r.ratio for r in self.rows if r.subset == s
                                             and r.benchmark == b and r.ratio is not None]),
                    "auroc_median": _median([r.auroc for r in self.rows if r.subset == s
                                             and r.benchmark == b and r.auroc is not None])}
                    for b in benches}}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "summary": self.summary(),
                "kld_floor": KLD_FLOOR, "weights": "n_failed * n_passed / (n + 1) per benchmark",
                "method": METHOD}


def auroc(failed: np.ndarray, passed: np.ndarray) -> float:
    """P(failed > passed) + P(tie)/2 via the rank-sum U of the failed sample."""
    r = bootstrap.average_ranks(np.concatenate([failed, passed]))
    nf, npass = failed.size, passed.size
    u = r[:nf].sum() - nf * (nf + 1) / 2.0
    return float(u / (nf * npass))


@dataclass(frozen=True)
class _Spec:
    q: int
    subset: str
    sel: np.ndarray  # (P,) prompts in the subset with an outcome and a KLD


def _specs(pd: PromptData) -> list[_Spec]:
    finite = np.isfinite(pd.kld)
    out = []
    for q in range(pd.kld.shape[0]):
        valid = pd.known[q] & finite[q]
        if valid.any():
            out += [_Spec(q, "all", valid), _Spec(q, "ref_passed", valid & pd.ref_passed)]
    return out


def _boot_sums(pd: PromptData, specs: list[_Spec], logk: np.ndarray, n_boot: int,
               rng: np.random.Generator) -> np.ndarray:
    """(n_boot, S, B, 4) resampled sums per spec and benchmark: ln KLD over failed, n failed,
    ln KLD over all, n all (prompts resampled within benchmarks)."""
    nb = len(pd.benchmarks)
    cols = [pd.columns(b) for b in pd.benchmarks]
    mats = []
    for c in cols:
        m = np.zeros((c.size, len(specs), 4), dtype=np.float32)
        for j, sp in enumerate(specs):
            sel = sp.sel[c]
            wf = sel & ~pd.passed[sp.q][c]
            m[:, j, 0] = np.where(wf, logk[sp.q][c], 0.0)
            m[:, j, 1] = wf
            m[:, j, 2] = np.where(sel, logk[sp.q][c], 0.0)
            m[:, j, 3] = sel
        mats.append(m.reshape(c.size, -1))
    out = np.empty((n_boot, len(specs), nb, 4), dtype=np.float32)
    for start in range(0, n_boot, BLOCK):
        b = min(BLOCK, n_boot - start)
        for k, c in enumerate(cols):
            cnt = bootstrap.counts(rng, c.size, b).astype(np.float32)  # (b, n_k)
            out[start:start + b, :, k, :] = (cnt @ mats[k]).reshape(b, len(specs), 4)
    return out


def _log_ratio(sf: np.ndarray, nf: np.ndarray, sa: np.ndarray, na: np.ndarray) -> np.ndarray:
    npass = na - nf
    with np.errstate(invalid="ignore", divide="ignore"):
        lr = sf / nf - (sa - sf) / npass
    return np.where((nf < 0.5) | (npass < 0.5), np.nan, lr)


def _stratified(lr: np.ndarray, nf: np.ndarray, na: np.ndarray) -> np.ndarray:
    """sum_b w_b L_b / sum_b w_b over the last axis, w_b = n_f n_p / (n_f + n_p + 1); NaN L_b
    (no failed or no passed prompt) skipped."""
    w = np.where(np.isfinite(lr), nf * (na - nf) / (na + 1.0), 0.0)
    tot = w.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, (w * np.nan_to_num(lr)).sum(axis=-1) / tot, np.nan)


def _cis(log_values: np.ndarray) -> np.ndarray:
    """(2, ...) exp of the percentile interval of every column of (n_boot, ...) log values."""
    lo, hi = bootstrap.percentile_cis(log_values)
    return np.exp(np.stack([lo, hi]))


def _pair(ci: np.ndarray) -> tuple[float | None, float | None]:
    return (None, None) if not np.isfinite(ci).all() else (float(ci[0]), float(ci[1]))


def _one(name: str, subset: str, bench: str, kld: np.ndarray, logk: np.ndarray,
         failed: np.ndarray, passed: np.ndarray,
         ci: tuple[float | None, float | None]) -> FailurePrediction:
    """A per-benchmark or pooled row over the prompts ``failed | passed``."""
    nfl = int((kld[failed | passed] <= KLD_FLOOR).sum())
    nf, np_ = int(failed.sum()), int(passed.sum())
    if nf == 0 or np_ == 0:
        return FailurePrediction(name, subset, nf, np_, None, None, None, None, None, None,
                                 None, None, nfl, bench)
    lf, lp = logk[failed], logk[passed]
    u, p = mann_whitney(kld[failed], kld[passed])
    return FailurePrediction(name, subset, nf, np_, float(np.exp(lf.mean())),
                             float(np.exp(lp.mean())), float(np.exp(lf.mean() - lp.mean())),
                             ci[0], ci[1], u / (nf * np_), u, p, nfl, bench, "mann-whitney")


def failure_prediction(cohort: Cohort, *, n_boot: int, rng: np.random.Generator) -> FailureResult:
    pd = cohort.prompts
    if pd is None:
        return FailureResult([])
    specs = _specs(pd)
    if not specs:
        return FailureResult([])
    finite = np.isfinite(pd.kld)
    logk = np.log(np.maximum(np.where(finite, pd.kld, 1.0), KLD_FLOOR))
    sums = _boot_sums(pd, specs, logk, n_boot, rng)  # (n_boot, S, B, 4)
    lr = _log_ratio(*(sums[..., i] for i in range(4)))  # (n_boot, S, B)
    strata = np.array([pd.benchmarks.index(b) for b in pd.mean_benchmarks], dtype=np.int64)
    boot_strat = _stratified(lr[..., strata], sums[..., strata, 1], sums[..., strata, 3])
    pooled = sums[..., strata, :].sum(axis=2)  # (n_boot, S, 4)
    boot_pool = _log_ratio(*(pooled[..., i] for i in range(4)))
    in_mean = np.isin(pd.bench, strata)
    ci_b, ci_s, ci_p = _cis(lr), _cis(boot_strat), _cis(boot_pool)  # (2, S, B), (2, S), (2, S)
    rows: list[FailurePrediction] = []
    for j, sp in enumerate(specs):
        name, kld = cohort.quants[sp.q], pd.kld[sp.q]
        failed, passed = sp.sel & ~pd.passed[sp.q], sp.sel & pd.passed[sp.q]
        for k, b in enumerate(pd.benchmarks):
            inb = pd.bench == k
            rows.append(_one(name, sp.subset, b, kld, logk[sp.q], failed & inb, passed & inb,
                             _pair(ci_b[:, j, k])))
        rows.append(_stratified_row(name, sp.subset, kld, logk[sp.q], failed & in_mean,
                                    passed & in_mean, pd.bench, strata, _pair(ci_s[:, j])))
        rows.append(_one(name, sp.subset, POOLED, kld, logk[sp.q], failed & in_mean,
                         passed & in_mean, _pair(ci_p[:, j])))
    return FailureResult(rows)


def _stratified_row(name: str, subset: str, kld: np.ndarray, logk: np.ndarray,
                    failed: np.ndarray, passed: np.ndarray, bench: np.ndarray,
                    strata: np.ndarray, ci: tuple[float | None, float | None]) -> FailurePrediction:
    nfl = int((kld[failed | passed] <= KLD_FLOOR).sum())
    nf, np_ = int(failed.sum()), int(passed.sum())
    lrs, aucs, ws = [], [], []
    groups_f, groups_p = [], []
    for k in strata:
        f, p = failed & (bench == k), passed & (bench == k)
        if not f.any() or not p.any():
            continue
        lrs.append(logk[f].mean() - logk[p].mean())
        aucs.append(auroc(kld[f], kld[p]))
        ws.append(f.sum() * p.sum() / (f.sum() + p.sum() + 1.0))
        groups_f.append(kld[f])
        groups_p.append(kld[p])
    if not ws:
        return FailurePrediction(name, subset, nf, np_, None, None, None, None, None, None,
                                 None, None, nfl, STRATIFIED)
    w = np.array(ws)
    ve = van_elteren(groups_f, groups_p)
    return FailurePrediction(name, subset, nf, np_, None, None,
                             float(np.exp(np.dot(w, lrs) / w.sum())), ci[0], ci[1],
                             float(np.dot(w, aucs) / w.sum()), None, ve.p, nfl, STRATIFIED,
                             "van-elteren")
