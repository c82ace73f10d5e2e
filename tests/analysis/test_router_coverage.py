"""Pooled router intervals: the cluster bootstrap over prompts against a plain loop, and its
coverage in a seeded simulation where every pair of quants shares the prompts."""

from __future__ import annotations

import time

import numpy as np
import pytest

from quantfid.analysis.binomial import clopper_pearson
from quantfid.analysis.cluster import cluster_ci, percentile_p
from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.router import decisions, route
from quantfid.store.workspace import Workspace

Q, PER_BENCH, BENCHES = 5, 80, 2


def _simulate(rng: np.random.Generator, n_prompts: int, cohorts: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
    """passed, kld (C, Q, P): a prompt's difficulty z is shared by every quant (so is its KLD
    level h); a quant passes when z + 0.7 e > t_q; its KLD falls with its own luck e, so
    routing to the lower KLD beats chance by a little. Pairs decide on shared prompts."""
    shape = (cohorts, Q, n_prompts)
    z = rng.standard_normal((cohorts, 1, n_prompts))
    h = rng.standard_normal((cohorts, 1, n_prompts))
    e = rng.standard_normal(shape)
    t = np.linspace(-0.6, 0.3, Q)[None, :, None]
    level = np.exp(np.linspace(-3.0, -1.0, Q))[None, :, None]
    passed = z + 0.7 * e > t
    kld = level * np.exp(0.6 * h + 0.4 * rng.standard_normal(shape) - 0.3 * e)
    return passed, kld


def _pooled(passed: np.ndarray, kld: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = decisions(passed, kld, np.ones_like(passed))
    return d.per_prompt[2], d.per_prompt[0] - d.per_prompt[1]


def _t_loop(correct: np.ndarray, decided: np.ndarray, strata: np.ndarray) -> tuple[float, float]:
    """theta and its stratified linearization se, written out prompt by prompt."""
    theta = correct.sum() / decided.sum()
    var = 0.0
    for s in np.unique(strata):
        r = [correct[p] - theta * decided[p] for p in np.flatnonzero(strata == s)]
        var += len(r) / (len(r) - 1) * sum((x - np.mean(r)) ** 2 for x in r)
    return theta, float(np.sqrt(var) / decided.sum())


def test_pooled_ci_is_a_cluster_bootstrap(small_ws: Workspace) -> None:
    """The pooled interval resamples prompts (within benchmarks) with every pair's decisions
    and studentizes each resample."""
    c = load_cohort(small_ws)
    pd = c.prompts
    assert pd is not None
    res = route(c, n_boot=200, rng=np.random.default_rng(3))
    d = decisions(pd.passed, pd.kld, pd.known & np.isfinite(pd.kld))
    correct, decided = d.per_prompt[2], d.per_prompt[0] - d.per_prompt[1]
    theta, se = _t_loop(correct, decided, pd.bench)
    gen = np.random.default_rng(3)
    cols = [pd.columns(b) for b in pd.benchmarks]
    draws = [col[gen.integers(0, col.size, size=(200, col.size))] for col in cols]
    ts = []
    for b in range(200):
        idx = np.concatenate([dr[b] for dr in draws])  # drawn prompts, all pairs kept
        tb, sb = _t_loop(correct[idx], decided[idx], pd.bench[idx])
        ts.append((tb - theta) / sb)
    assert res.pooled is not None and res.pooled.method == "cluster-bootstrap-t"
    q_lo, q_hi = np.quantile(ts, [0.025, 0.975])
    assert (res.pooled.ci_low, res.pooled.ci_high) == pytest.approx(
        (theta - q_hi * se, theta - q_lo * se), rel=1e-9)
    t0 = (theta - 0.5) / se
    want_p = min(1.0, 2 * min(sum(t >= t0 for t in ts) + 1, sum(t <= t0 for t in ts) + 1) / 201)
    assert res.pooled.p == pytest.approx(want_p)
    assert res.pooled.correct == int(correct.sum()) and res.pooled.decided == int(decided.sum())
    assert all(s.method == "exact" for _, _, s in res.pairs)


def test_percentile_p_matches_the_interval() -> None:
    boot = np.random.default_rng(0).normal(0.56, 0.02, 4000)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    p = percentile_p(boot)
    assert p is not None and (p < 0.05) == (not lo <= 0.5 <= hi)
    assert percentile_p(np.full(10, np.nan)) is None


def test_cluster_bootstrap_coverage() -> None:
    """2,000 simulated cohorts of 5 quants (10 pairs) on 2 x 80 shared prompts: the 95 %
    studentized cluster-bootstrap interval of the pooled routing accuracy covers the true accuracy
    (E[correct] / E[decided] per prompt, from 400,000 simulated prompts) 93.5-96.5 % of the
    time. Treating the pooled decisions as independent (Clopper-Pearson on the pooled count)
    covers less."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(2024)
    big_p, big_k = _simulate(rng, 400_000)
    c_big, d_big = _pooled(big_p[0], big_k[0])
    truth = c_big.sum() / d_big.sum()
    n_cohorts = 2000
    passed, kld = _simulate(rng, PER_BENCH * BENCHES, n_cohorts)
    strata = np.repeat(np.arange(BENCHES), PER_BENCH)
    hits = naive_hits = 0
    for i in range(n_cohorts):
        correct, decided = _pooled(passed[i], kld[i])
        ci = cluster_ci(correct, decided, strata, 999, rng)
        assert ci.ci_low is not None and ci.ci_high is not None
        lo, hi = ci.ci_low, ci.ci_high
        hits += lo <= truth <= hi
        nlo, nhi = clopper_pearson(int(correct.sum()), int(decided.sum()))
        naive_hits += float(nlo) <= truth <= float(nhi)
    coverage, naive = hits / n_cohorts, naive_hits / n_cohorts
    assert 0.935 <= coverage <= 0.965, (coverage, truth)
    assert naive < coverage - 0.03, (naive, coverage)
    assert time.perf_counter() - t0 < 60
