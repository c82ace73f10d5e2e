"""Block length and moving-block bootstrap within windows (quantfid.metrics.blocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quantfid.metrics import TokenMetrics, summarize
from quantfid.metrics.blocks import (
    autocovariance,
    block_bootstrap_means,
    block_bootstrap_t,
    block_length,
    circular_block_sums,
)


def _ar1(rng: np.random.Generator, reps: int, n: int, phi: float) -> np.ndarray:
    """(reps, n) stationary Gaussian AR(1) series with unit variance."""
    e = rng.standard_normal((reps, n)) * math.sqrt(1 - phi * phi)
    z = np.empty_like(e)
    z[:, 0] = rng.standard_normal(reps)
    for t in range(1, n):
        z[:, t] = phi * z[:, t - 1] + e[:, t]
    return z


def test_autocovariance_against_a_plain_loop() -> None:
    rng = np.random.default_rng(0)
    wins = [rng.random(37), rng.random(20), rng.random(5)]
    x = np.concatenate(wins)
    m = x.mean()
    want = [sum(float(((w[:w.size - k] - m) * (w[k:] - m)).sum()) for w in wins if w.size > k)
            / x.size for k in range(9)]
    assert autocovariance(wins, 8) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_block_length_matches_the_ar1_theory() -> None:
    """On a long AR(1) the estimate approaches the optimal length (2 G^2 / D)^(1/3) n^(1/3)
    computed from the true autocovariances (G / g = 2 phi / (1 - phi^2))."""
    n, phi = 100_000, 0.5
    z = _ar1(np.random.default_rng(1), 1, n, phi)[0]
    theory = (1.5 * (2 * phi / (1 - phi * phi)) ** 2) ** (1 / 3) * n ** (1 / 3)
    assert block_length([z]) == pytest.approx(theory, rel=0.2)
    # independent tokens need no blocks; the length never exceeds the shortest window
    assert block_length([np.random.default_rng(2).standard_normal(5000)]) == 1
    assert block_length([z[:3000], z[3000:3040]]) <= 40


def test_circular_block_sums_wrap_within_each_window() -> None:
    x = np.arange(1.0, 8.0)[None, :]  # windows [1, 2, 3, 4] and [5, 6, 7]
    got = circular_block_sums(x, [4, 3], 3)[0]
    assert got.tolist() == [6, 9, 8, 7, 18, 18, 18]


def test_block_bootstrap_draws_are_block_sums() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((2, 30))
    means = block_bootstrap_means(x, [30], 4, 50, np.random.default_rng(9))
    starts = np.random.default_rng(9).integers(0, 30, size=(50, 8))
    ext = np.concatenate([x, x], axis=1)
    want = np.array([[sum(ext[r, s:s + 4].sum() for s in row) / 32 for row in starts]
                     for r in range(2)])
    assert means == pytest.approx(want, rel=1e-12)


def test_studentized_interval_against_a_loop() -> None:
    x = np.random.default_rng(5).gamma(1.0, 0.1, (1, 40))
    got = block_bootstrap_t(x, [40], 4, 300, np.random.default_rng(2))[0]
    means = np.array([np.concatenate([x[0], x[0]])[s:s + 4].mean() for s in range(40)])
    se = np.sqrt(means.var() / 10)
    starts = np.random.default_rng(2).integers(0, 40, size=(300, 10))
    t = [(means[row].mean() - x.mean()) / np.sqrt(means[row].var() / 10) for row in starts]
    q_lo, q_hi = np.quantile(t, [0.025, 0.975])
    assert got == pytest.approx([x.mean() - q_hi * se, x.mean() - q_lo * se], rel=1e-10)


def test_coverage_of_the_moving_block_interval() -> None:
    """Seeded simulation: one window of 1,024 autocorrelated log-normal per-token KLDs (AR(1)
    phi = 0.5 on the log scale, like hard passages raising KLD for a while). The 95 %
    interval of the mean covers the true mean 0.1 exp(sigma^2 / 2) at close to the nominal
    rate; the token bootstrap (block length 1) does not."""
    reps, n, sigma = 300, 1024, 0.5
    rng = np.random.default_rng(20240)
    x = 0.1 * np.exp(sigma * _ar1(rng, reps, n, 0.5))
    truth = 0.1 * math.exp(sigma * sigma / 2)
    hits, hits_iid = 0, 0
    for r in range(reps):
        length = block_length([x[r]])
        lo, hi = block_bootstrap_t(x[r][None, :], [n], length, 400, rng)[0]
        hits += int(lo <= truth <= hi)
        lo, hi = block_bootstrap_t(x[r][None, :], [n], 1, 400, rng)[0]
        hits_iid += int(lo <= truth <= hi)
    assert 0.90 <= hits / reps <= 0.98, hits / reps
    assert hits_iid / reps < 0.85, hits_iid / reps


def test_one_window_gets_a_moving_block_interval() -> None:
    rng = np.random.default_rng(4)
    n = 256
    kld = 0.05 * np.exp(0.5 * _ar1(rng, 1, n, 0.6)[0])
    nll_ref = rng.gamma(2.0, 1.0, n)
    tm = TokenMetrics(kld=kld, same_top1=np.ones(n, bool), ref_top1_prob=np.ones(n),
                      nll_ref=nll_ref, nll_q=nll_ref + kld)
    st = summarize(tm, np.zeros(n, dtype=np.int64), n_boot=500, rng=np.random.default_rng(0))
    assert st.n_windows == 1 and st.ci_method == "moving-block-bootstrap"
    assert st.ci_block_tokens is not None and st.ci_block_tokens > 1
    assert st.kld_mean_ci_low is not None and st.kld_mean_ci_high is not None
    assert st.kld_mean_ci_low < kld.mean() < st.kld_mean_ci_high
    assert st.ln_ppl_ratio_ci_low is not None
    # the same tokens as their own blocks: the token bootstrap, a narrower interval
    iid = summarize(tm, None, n_boot=500, rng=np.random.default_rng(0))
    assert iid.ci_method == "token-bootstrap" and iid.ci_block_tokens is None
    assert (iid.kld_mean_ci_high - iid.kld_mean_ci_low  # type: ignore[operator]
            < st.kld_mean_ci_high - st.kld_mean_ci_low)
    # ten or more windows: whole windows are resampled
    many = summarize(tm, np.repeat(np.arange(16), 16), n_boot=500, rng=np.random.default_rng(0))
    assert many.ci_method == "window-bootstrap" and many.n_windows == 16
    # too few tokens for any interval
    few = summarize(TokenMetrics(kld=kld[:10], same_top1=np.ones(10, bool),
                                 ref_top1_prob=np.ones(10)), np.zeros(10), n_boot=100)
    assert few.ci_method is None and few.kld_mean_ci_low is None
