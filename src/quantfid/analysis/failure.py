"""Failure prediction: is a quant's per-prompt KLD higher on the prompts it fails?

Per quant (never the reference), over every benchmark prompt with both an outcome and a
per-prompt KLD (``PromptFidelity.kld_mean``, KL(P_ref || P_q) in nats), and again over
only the prompts the reference passed (``subset`` = ``"all"`` | ``"ref_passed"``):

* ``ratio`` = geometric mean of KLD over failed prompts / over passed prompts
  (exp(mean ln KLD_failed - mean ln KLD_passed)). Zeros: a KLD <= ``KLD_FLOOR`` = 1e-10
  nats (a prompt where the quant matches the reference to rounding, or a tiny negative
  from float error) is raised to ``KLD_FLOOR`` before the logarithm; ``n_floored`` counts
  them. ``ci_low``/``ci_high``: seeded percentile bootstrap 95 % interval, resampling
  prompts with replacement (one shared resample matrix for all quants; resamples with no
  failed or no passed prompt are dropped).
* ``auroc`` = P(KLD of a failed prompt > KLD of a passed prompt) + 1/2 P(tie)
  = U_failed / (n_failed n_passed), from the Mann-Whitney U statistic (no sklearn); 0.5 is
  chance. ``p``: two-sided Mann-Whitney p (``scipy.stats.mannwhitneyu``, method "auto").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from quantfid.analysis import bootstrap
from quantfid.analysis.cohort import Cohort

KLD_FLOOR = 1e-10
SUBSETS: tuple[str, ...] = ("all", "ref_passed")
METHOD = ("geometric-mean ratio failed/passed (KLD floored at 1e-10 nats), percentile "
          "bootstrap over prompts; AUROC = U/(n_f n_p); Mann-Whitney two-sided")
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
    method: str = METHOD

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "subset": self.subset, "n_failed": self.n_failed,
                "n_passed": self.n_passed, "gm_failed": self.gm_failed,
                "gm_passed": self.gm_passed, "ratio": self.ratio, "ci_low": self.ci_low,
                "ci_high": self.ci_high, "auroc": self.auroc, "mw_u": self.mw_u, "p": self.p,
                "n_floored": self.n_floored, "method": self.method}


@dataclass(frozen=True)
class FailureResult:
    rows: list[FailurePrediction]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for s in SUBSETS:
            rs = [r for r in self.rows if r.subset == s and r.ratio is not None]
            ratios = np.array([r.ratio for r in rs], dtype=float)
            aucs = np.array([r.auroc for r in rs if r.auroc is not None], dtype=float)
            out[s] = {"n_models": len(rs),
                      "ratio_median": float(np.median(ratios)) if rs else None,
                      "ratio_min": float(ratios.min()) if rs else None,
                      "ratio_max": float(ratios.max()) if rs else None,
                      "auroc_median": float(np.median(aucs)) if aucs.size else None,
                      "n_p_below_0_05": sum(1 for r in rs if r.p is not None and r.p < 0.05)}
        return out

    def to_json(self) -> dict[str, Any]:
        return {"rows": [r.to_json() for r in self.rows], "summary": self.summary(),
                "kld_floor": KLD_FLOOR, "method": METHOD}


def auroc(failed: np.ndarray, passed: np.ndarray) -> float:
    """P(failed > passed) + P(tie)/2 via the rank-sum U of the failed sample."""
    r = bootstrap.average_ranks(np.concatenate([failed, passed]))
    nf, npass = failed.size, passed.size
    u = r[:nf].sum() - nf * (nf + 1) / 2.0
    return float(u / (nf * npass))


def failure_prediction(cohort: Cohort, *, n_boot: int, rng: np.random.Generator) -> FailureResult:
    pd = cohort.prompts
    if pd is None:
        return FailureResult([])
    nq, n_p = pd.kld.shape
    finite = np.isfinite(pd.kld)
    logk = np.log(np.maximum(np.where(finite, pd.kld, 1.0), KLD_FLOOR))
    specs: list[tuple[int, str, np.ndarray]] = []
    for q in range(nq):
        valid = pd.known[q] & finite[q]
        if not valid.any():
            continue
        specs.append((q, "all", valid))
        specs.append((q, "ref_passed", valid & pd.ref_passed))
    if not specs:
        return FailureResult([])
    # columns per spec: sum lnk over failed, n failed, sum lnk over all, n all
    mat = np.zeros((n_p, 4 * len(specs)), dtype=np.float32)
    for j, (q, _, sel) in enumerate(specs):
        wf = sel & ~pd.passed[q]
        mat[:, 4 * j] = np.where(wf, logk[q], 0.0)
        mat[:, 4 * j + 1] = wf
        mat[:, 4 * j + 2] = np.where(sel, logk[q], 0.0)
        mat[:, 4 * j + 3] = sel
    boot = np.empty((n_boot, 4 * len(specs)), dtype=np.float64)
    for start in range(0, n_boot, BLOCK):
        b = min(BLOCK, n_boot - start)
        c = bootstrap.counts(rng, n_p, b).astype(np.float32)
        boot[start:start + b] = c @ mat
    rows: list[FailurePrediction] = []
    for j, (q, subset, sel) in enumerate(specs):
        f = sel & ~pd.passed[q]
        p_ = sel & pd.passed[q]
        kf, kp = pd.kld[q][f], pd.kld[q][p_]
        nfl = int((pd.kld[q][sel] <= KLD_FLOOR).sum())
        name = cohort.quants[q]
        if kf.size == 0 or kp.size == 0:
            rows.append(FailurePrediction(name, subset, int(kf.size), int(kp.size), None, None,
                                          None, None, None, None, None, None, nfl))
            continue
        lf, lp = logk[q][f], logk[q][p_]
        gm_f, gm_p = float(np.exp(lf.mean())), float(np.exp(lp.mean()))
        sf, nf, sa, na = (boot[:, 4 * j + i] for i in range(4))
        npass = na - nf
        with np.errstate(invalid="ignore", divide="ignore"):
            lr = sf / nf - (sa - sf) / npass
        lr[(nf < 0.5) | (npass < 0.5)] = np.nan
        lo, hi = bootstrap.percentile_ci(lr)
        mw = stats.mannwhitneyu(kf, kp, alternative="two-sided")
        u = float(mw.statistic)
        rows.append(FailurePrediction(
            name, subset, int(kf.size), int(kp.size), gm_f, gm_p, float(np.exp(lf.mean() - lp.mean())),
            None if lo is None else float(np.exp(lo)), None if hi is None else float(np.exp(hi)),
            u / (kf.size * kp.size), u, float(mw.pvalue), nfl))
    return FailureResult(rows)
