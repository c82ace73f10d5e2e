"""Rank correlations against scipy and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis import bootstrap
from quantfid.analysis.correlation import (
    correlate,
    correlate_many,
    direction,
    kendall_tau_b,
    point_stats,
)


def _data(rng: np.random.Generator, n: int, ties: bool) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    if ties:
        x, y = np.round(x), np.round(y)
    return x, y


@pytest.mark.parametrize("n", [5, 12, 41])
@pytest.mark.parametrize("ties", [False, True])
def test_rho_tau_match_scipy(n: int, ties: bool) -> None:
    x, y = _data(np.random.default_rng(n), n, ties)
    rs = correlate(x, y, n_boot=200, rng=np.random.default_rng(0))
    assert rs.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert rs.tau == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    if n > 10:
        assert rs.p_method == "t-approximation"
        assert rs.p == pytest.approx(stats.spearmanr(x, y).pvalue, rel=1e-9)
        assert rs.tau_p == pytest.approx(stats.kendalltau(x, y, method="asymptotic").pvalue, rel=1e-9)


def test_kendall_asymptotic_matches_scipy_with_ties() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=30).astype(float)
    y = rng.integers(0, 5, size=30).astype(float)
    tau, p = kendall_tau_b(x, y)
    ref = stats.kendalltau(x, y, method="asymptotic")
    assert tau == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def _brute_perm_p(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided permutation p by a plain loop over all n! permutations with scipy stats."""
    r0 = stats.spearmanr(x, y).statistic
    t0 = stats.kendalltau(x, y).statistic
    hit_r = hit_t = total = 0
    for perm in itertools.permutations(range(x.size)):
        yp = y[list(perm)]
        hit_r += abs(stats.spearmanr(x, yp).statistic) >= abs(r0) - 1e-12
        hit_t += abs(stats.kendalltau(x, yp).statistic) >= abs(t0) - 1e-12
        total += 1
    return hit_r / total, hit_t / total


@pytest.mark.parametrize(("n", "ties"), [(4, False), (5, True), (6, False), (6, True)])
def test_permutation_p_exact(n: int, ties: bool) -> None:
    x, y = _data(np.random.default_rng(10 + n), n, ties)
    if np.all(x == x[0]) or np.all(y == y[0]):
        pytest.skip("constant draw")
    ps = point_stats(x, y)
    assert ps.p_method == "permutation-exact"
    pr, pt = _brute_perm_p(x, y)
    assert ps.p == pytest.approx(pr, abs=1e-12)
    assert ps.tau_p == pytest.approx(pt, abs=1e-12)


def test_permutation_exact_known_value() -> None:
    # perfect order, n = 5, no ties: only the identity and the reversal reach |rho| = 1
    x = np.arange(5.0)
    ps = point_stats(x, x)
    assert ps.rho == pytest.approx(1.0)
    assert ps.p == pytest.approx(2 / 120)
    assert ps.tau_p == pytest.approx(2 / 120)


def test_permutation_mc_for_9_and_10() -> None:
    rng = np.random.default_rng(3)
    x, y = _data(rng, 9, False)
    ps = point_stats(x, y)
    assert ps.p_method == "permutation-mc"
    # exact reference: all 9! permutations, rho from scipy's ranks, vectorised
    rx = stats.rankdata(x) - 5.0
    ry = stats.rankdata(y) - 5.0
    perms = np.array(list(itertools.permutations(range(9))), dtype=np.int8)
    t = ry[perms] @ rx
    exact = float(np.mean(np.abs(t) >= abs(rx @ ry) - 1e-9))
    assert ps.p == pytest.approx(exact, abs=0.006)
    # reproducible on its own (seeded by the data's tie pattern)
    assert point_stats(x, y).p == ps.p
    x10, y10 = _data(rng, 10, True)
    assert point_stats(x10, y10).p_method == "permutation-mc"


def test_undefined_cases() -> None:
    assert point_stats(np.array([1.0, 2.0]), np.array([2.0, 1.0])).rho is None
    assert point_stats(np.ones(6), np.arange(6.0)).rho is None


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
def test_resample_spearman_equals_scipy_per_resample() -> None:
    rng = np.random.default_rng(0)
    for n, ties in ((7, True), (15, False), (15, True)):
        x, y = _data(rng, n, ties)
        idx = bootstrap.indices(rng, n, 300)
        ct = np.ascontiguousarray(bootstrap.counts_from_indices(idx, n).T, dtype=np.float32)
        got = bootstrap.spearman_resamples(x, y, ct)
        for b in range(idx.shape[0]):
            ref = stats.spearmanr(x[idx[b]], y[idx[b]]).statistic
            if np.isnan(ref):
                assert np.isnan(got[b])
            else:
                assert got[b] == pytest.approx(ref, abs=1e-9)


def test_resample_ranks_equal_rankdata() -> None:
    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=9))
    idx = bootstrap.indices(rng, 9, 50)
    ct = np.ascontiguousarray(bootstrap.counts_from_indices(idx, 9).T, dtype=np.float32)
    ranks = bootstrap.resample_ranks(x, ct)
    for b in range(50):
        ref = stats.rankdata(x[idx[b]])
        assert np.allclose(ranks[idx[b], b], ref)


def test_bootstrap_ci_agrees_with_scipy_bootstrap() -> None:
    rng = np.random.default_rng(11)
    x, y = _data(rng, 30, False)
    rs = correlate(x, y, n_boot=4000, rng=np.random.default_rng(2))
    ref = stats.bootstrap((x, y), lambda a, b: stats.spearmanr(a, b).statistic, paired=True,
                          vectorized=False, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(3)).confidence_interval
    assert rs.ci_low == pytest.approx(ref.low, abs=0.05)
    assert rs.ci_high == pytest.approx(ref.high, abs=0.05)
    assert rs.ci_low is not None and rs.ci_high is not None and rs.rho is not None
    assert rs.ci_low < rs.rho < rs.ci_high


def test_bootstrap_is_seeded() -> None:
    x, y = _data(np.random.default_rng(4), 20, False)
    a = correlate(x, y, n_boot=500, rng=np.random.default_rng(9))
    b = correlate(x, y, n_boot=500, rng=np.random.default_rng(9))
    c = correlate(x, y, n_boot=500, rng=np.random.default_rng(10))
    assert a == b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_correlate_many_drops_missing_per_row() -> None:
    rng = np.random.default_rng(6)
    x, y = _data(rng, 14, False)
    x2 = x.copy()
    x2[[1, 4]] = np.nan
    y2 = y.copy()
    y2[7] = np.nan
    res = correlate_many(np.vstack([x, x2]), y2, n_boot=100, rng=rng)
    keep1 = np.isfinite(y2)
    keep2 = keep1 & np.isfinite(x2)
    assert res[0].n == 13 and res[1].n == 11
    assert res[0].rho == pytest.approx(stats.spearmanr(x[keep1], y[keep1]).statistic)
    assert res[1].rho == pytest.approx(stats.spearmanr(x[keep2], y[keep2]).statistic)


def test_direction_convention() -> None:
    assert direction("kld_mean") == -1
    assert direction("ppl_ratio") == -1
    assert direction("same_top1") == 1
