"""Failure prediction against plain loops and scipy; the stratified estimate and Simpson."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.failure import KLD_FLOOR, auroc, failure_prediction
from quantfid.analysis.van_elteren import van_elteren
from quantfid.store.workspace import Workspace


def test_auroc_is_pairwise_probability() -> None:
    rng = np.random.default_rng(0)
    f = np.round(rng.normal(1, 1, 30), 1)
    p = np.round(rng.normal(0, 1, 50), 1)
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in f for b in p])
    assert auroc(f, p) == pytest.approx(brute)
    u = stats.mannwhitneyu(f, p).statistic
    assert auroc(f, p) == pytest.approx(u / (f.size * p.size))


def _loop_van_elteren(groups: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Van Elteren's z written out with explicit mid-ranks and tie counts."""
    t = v = 0.0
    for a, b in groups:
        allv = np.concatenate([a, b])
        n = allv.size
        ranks = np.array([(allv < x).sum() + ((allv == x).sum() + 1) / 2 for x in allv])
        w = ranks[:a.size].sum()
        ties = [int((allv == x).sum()) for x in np.unique(allv)]
        t += (w - a.size * (n + 1) / 2) / (n + 1)
        v += a.size * b.size / 12 * ((n + 1) - sum(c ** 3 - c for c in ties) / (n * (n - 1))) / (n + 1) ** 2
    return float(2 * stats.norm.sf(abs(t / np.sqrt(v))))


def test_van_elteren() -> None:
    rng = np.random.default_rng(1)
    a, b = np.round(rng.normal(0.3, 1, 40), 1), np.round(rng.normal(0, 1, 55), 1)
    one = van_elteren([a], [b])
    mw = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=False)
    assert one.p == pytest.approx(mw.pvalue, rel=1e-10)
    groups = [(np.round(rng.normal(m, 1, k), 1), np.round(rng.normal(0, 1, j), 1))
              for m, k, j in ((0.2, 30, 70), (0.5, 12, 8), (0.0, 25, 25))]
    res = van_elteren([g[0] for g in groups], [g[1] for g in groups])
    assert res.p == pytest.approx(_loop_van_elteren(groups), rel=1e-10)
    assert res.n_strata == 3
    assert van_elteren([np.array([])], [b]).p is None


def _loop_row(k: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """Stratified log-ratio and AUROC with weights n_f n_p / (n + 1), written as loops."""
    num = den = auc = 0.0
    for f, p in groups:
        if not f.any() or not p.any():
            continue
        w = f.sum() * p.sum() / (f.sum() + p.sum() + 1)
        num += w * (np.log(k[f]).mean() - np.log(k[p]).mean())
        auc += w * np.mean([(x > y) + 0.5 * (x == y) for x in k[f] for y in k[p]])
        den += w
    return num / den, auc / den


def test_against_loops(small_ws: Workspace) -> None:
    c = load_cohort(small_ws)
    pd = c.prompts
    assert pd is not None
    n_boot = 300
    res = failure_prediction(c, n_boot=n_boot, rng=np.random.default_rng(5))
    cols = [pd.columns(b) for b in pd.benchmarks]
    gen = np.random.default_rng(5)  # the documented draw: per benchmark, in order
    draws = [c_[gen.integers(0, c_.size, size=(n_boot, c_.size))] for c_ in cols]
    rows = {(r.model, r.subset, r.benchmark): r for r in res.rows}
    assert len(rows) == 2 * len(c.quants) * (len(pd.benchmarks) + 2)
    assert c.reference not in {m for m, _, _ in rows}
    for q in (0, len(c.quants) - 1):
        name = c.quants[q]
        k = np.maximum(pd.kld[q], KLD_FLOOR)
        for subset, sel in (("all", np.ones(pd.bench.size, bool)), ("ref_passed", pd.ref_passed)):
            failed, passed = sel & ~pd.passed[q], sel & pd.passed[q]
            for bi, b in enumerate(pd.benchmarks):
                r = rows[(name, subset, b)]
                f, p = failed & (pd.bench == bi), passed & (pd.bench == bi)
                assert (r.n_failed, r.n_passed) == (f.sum(), p.sum())
                if not f.any() or not p.any():
                    assert r.ratio is None and r.ci_low is None
                    continue
                assert r.ratio == pytest.approx(np.exp(np.log(k[f]).mean() - np.log(k[p]).mean()))
                mw = stats.mannwhitneyu(pd.kld[q][f], pd.kld[q][p])
                assert r.p == pytest.approx(mw.pvalue) and r.mw_u == pytest.approx(mw.statistic)
            r = rows[(name, subset, "pooled")]
            want = np.exp(np.log(k[failed]).mean() - np.log(k[passed]).mean())
            assert r.ratio == pytest.approx(want, rel=1e-12)
            groups = [(failed & (pd.bench == bi), passed & (pd.bench == bi))
                      for bi in range(len(pd.benchmarks))]
            r = rows[(name, subset, "stratified")]
            lr, auc = _loop_row(k, groups)
            assert r.ratio == pytest.approx(np.exp(lr), rel=1e-12)
            assert r.auroc == pytest.approx(auc, rel=1e-12)
            assert r.p == pytest.approx(_loop_van_elteren(
                [(pd.kld[q][f], pd.kld[q][p]) for f, p in groups]), rel=1e-9)
            boot = []
            for b in range(n_boot):
                idx = np.concatenate([d[b] for d in draws])
                kk = k[idx]
                g = [(failed[idx] & (pd.bench[idx] == bi), passed[idx] & (pd.bench[idx] == bi))
                     for bi in range(len(pd.benchmarks))]
                num = sum(f.sum() * p.sum() / (f.sum() + p.sum() + 1)
                          * (np.log(kk[f]).mean() - np.log(kk[p]).mean())
                          for f, p in g if f.any() and p.any())
                den = sum(f.sum() * p.sum() / (f.sum() + p.sum() + 1) for f, p in g
                          if f.any() and p.any())
                if den:
                    boot.append(num / den)
            lo, hi = np.exp(np.percentile(boot, [2.5, 97.5]))
            assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=1e-4)


def test_zero_kld_is_floored(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    out = {"ref": {"b": [1, 1, 0, 0, 1, 0]}, "q": {"b": [1, 0, 0, 1, 1, 0]}}
    kl = {"q": {"b": [0.0, 0.2, 0.1, 0.0, -1e-12, 0.3]}}
    ws = hand_ws(tmp_path / "w", out, {"q": 0.1}, kl)
    res = failure_prediction(load_cohort(ws), n_boot=50, rng=np.random.default_rng(0))
    r = next(x for x in res.rows if x.subset == "all" and x.benchmark == "b")
    assert r.n_floored == 3
    k = np.maximum(np.array([0.0, 0.2, 0.1, 0.0, -1e-12, 0.3]), KLD_FLOOR)
    failed = np.array([0, 1, 1, 0, 0, 1], bool)
    want = np.exp(np.log(k[failed]).mean() - np.log(k[~failed]).mean())
    assert r.ratio == pytest.approx(want)
    # one benchmark: stratified and pooled are the per-benchmark figure
    for kind in ("stratified", "pooled"):
        assert next(x for x in res.rows if x.subset == "all" and x.benchmark == kind).ratio \
            == pytest.approx(want)


def test_simpsons_paradox(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    """Benchmark "hi": high KLD, mostly passed; "lo": low KLD, mostly failed. Within each,
    failed prompts have the higher KLD (ratio > 1); pooled, the failures come mostly from the
    low-KLD benchmark, so the unstratified ratio is < 1. The stratified estimate says > 1."""
    rng = np.random.default_rng(11)
    n = 200
    hi_pass = rng.random(n) < 0.9
    lo_pass = rng.random(n) < 0.1
    hi_k = 1.0 * np.exp(0.3 * rng.standard_normal(n)) * np.where(hi_pass, 1.0, 1.5)
    lo_k = 0.05 * np.exp(0.3 * rng.standard_normal(n)) * np.where(lo_pass, 1.0, 1.5)
    out = {"ref": {"hi": [1] * n, "lo": [1] * n},
           "q": {"hi": hi_pass.astype(int).tolist(), "lo": lo_pass.astype(int).tolist()}}
    ws = hand_ws(tmp_path / "w", out, {"q": 0.1}, {"q": {"hi": hi_k.tolist(), "lo": lo_k.tolist()}})
    res = failure_prediction(load_cohort(ws), n_boot=400, rng=np.random.default_rng(0))
    by = {r.benchmark: r for r in res.rows if r.subset == "all"}
    assert by["hi"].ratio > 1 and by["lo"].ratio > 1  # type: ignore[operator]
    assert by["pooled"].ratio < 1  # type: ignore[operator]
    st = by["stratified"]
    assert st.ratio is not None and st.ratio > 1 and st.ci_low is not None and st.ci_low > 1
    assert st.auroc is not None and st.auroc > 0.5 and st.p is not None and st.p < 1e-3
    assert by["pooled"].auroc < 0.5  # type: ignore[operator]
    summ = res.summary()["all"]
    assert summ["ratio_median"] == pytest.approx(st.ratio)
    assert summ["pooled_ratio_median"] == pytest.approx(by["pooled"].ratio)
