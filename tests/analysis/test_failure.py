"""Failure prediction against plain loops and scipy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.failure import KLD_FLOOR, auroc, failure_prediction
from quantfid.store.workspace import Workspace


def test_auroc_is_pairwise_probability() -> None:
    rng = np.random.default_rng(0)
    f = np.round(rng.normal(1, 1, 30), 1)
    p = np.round(rng.normal(0, 1, 50), 1)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in f for b in p])
    assert auroc(f, p) == pytest.approx(brute)
    u = stats.mannwhitneyu(f, p).statistic
    assert auroc(f, p) == pytest.approx(u / (f.size * p.size))


def test_against_loops(volume_ws: Workspace) -> None:
    c = load_cohort(volume_ws)
    pd = c.prompts
    assert pd is not None
    n_boot = 300
    res = failure_prediction(c, n_boot=n_boot, rng=np.random.default_rng(5))
    idx = np.random.default_rng(5).integers(0, pd.bench.size, size=(n_boot, pd.bench.size))
    rows = {(r.model, r.subset): r for r in res.rows}
    assert len(rows) == 2 * len(c.quants) and c.reference not in {m for m, _ in rows}
    for q in (0, 7, len(c.quants) - 1):
        name = c.quants[q]
        for subset, sel in (("all", np.ones(pd.bench.size, bool)), ("ref_passed", pd.ref_passed)):
            r = rows[(name, subset)]
            k = np.maximum(pd.kld[q], KLD_FLOOR)
            failed = sel & ~pd.passed[q]
            passed = sel & pd.passed[q]
            assert (r.n_failed, r.n_passed) == (failed.sum(), passed.sum())
            gm = np.exp(np.log(k[failed]).mean()) / np.exp(np.log(k[passed]).mean())
            assert r.ratio == pytest.approx(gm, rel=1e-12)
            mw = stats.mannwhitneyu(pd.kld[q][failed], pd.kld[q][passed])
            assert r.p == pytest.approx(mw.pvalue) and r.mw_u == pytest.approx(mw.statistic)
            boot = []
            for b in range(n_boot):
                s = idx[b]
                fb, pb = failed[s], passed[s]
                if fb.any() and pb.any():
                    boot.append(np.log(k[s][fb]).mean() - np.log(k[s][pb]).mean())
            lo, hi = np.exp(np.percentile(boot, [2.5, 97.5]))
            assert r.ci_low == pytest.approx(lo, rel=1e-4)
            assert r.ci_high == pytest.approx(hi, rel=1e-4)


def test_zero_kld_is_floored(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    out = {"ref": {"b": [1, 1, 0, 0, 1, 0]}, "q": {"b": [1, 0, 0, 1, 1, 0]}}
    kl = {"q": {"b": [0.0, 0.2, 0.1, 0.0, -1e-12, 0.3]}}
    ws = hand_ws(tmp_path / "w", out, {"q": 0.1}, kl)
    res = failure_prediction(load_cohort(ws), n_boot=50, rng=np.random.default_rng(0))
    r = next(x for x in res.rows if x.subset == "all")
    assert r.n_floored == 3
    k = np.maximum(np.array([0.0, 0.2, 0.1, 0.0, -1e-12, 0.3]), KLD_FLOOR)
    failed = np.array([0, 1, 1, 0, 0, 1], bool)
    want = np.exp(np.log(k[failed]).mean() - np.log(k[~failed]).mean())
    assert r.ratio == pytest.approx(want)
