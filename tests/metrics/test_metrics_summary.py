"""summarize() against llama.cpp's formulas written out independently from their definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from quantfid.metrics import STATS_KEYS, TokenMetrics, summarize
from quantfid.metrics.summary import BUCKET_EDGES


def _random_tm(rng: np.random.Generator, n: int, targets: bool = True) -> TokenMetrics:
    kld = rng.gamma(0.5, 0.05, n)
    nll_ref = rng.gamma(2.0, 1.2, n)
    nll_q = nll_ref + rng.normal(0.02, 0.1, n)
    return TokenMetrics(
        kld=kld, same_top1=rng.random(n) < 0.9, ref_top1_prob=rng.random(n),
        rkld=kld * 1.1, jsd=kld / 4,
        nll_ref=nll_ref if targets else None, nll_q=nll_q if targets else None,
        dp=(np.exp(-nll_q) - np.exp(-nll_ref)) if targets else None,
        top5_overlap=rng.integers(0, 6, n) / 5, top10_overlap=rng.integers(0, 11, n) / 10)


def _llama_percentile(values: np.ndarray, frac: float) -> float:
    """llama.cpp: p = f (n - 1), ip = floor(p), (1 - (p - ip)) v[ip] + (p - ip) v[ip + 1]."""
    v = np.sort(values)
    pos = frac * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    w = pos - lo
    return (1 - w) * v[lo] + w * v[hi]


def test_against_llama_cpp_definitions() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    tm = _random_tm(rng, n)
    st = summarize(tm, n_boot=0).to_json()
    kld, a, b, dp = tm.kld, tm.nll_q, tm.nll_ref, tm.dp
    assert a is not None and b is not None and dp is not None

    # mean +- uncertainty: population std / sqrt(n - 1)
    def se(x: np.ndarray) -> float:
        return float(np.std(x) / np.sqrt(len(x) - 1))
    cov = float(np.cov(a, b, bias=True)[0, 1] / (n - 1))
    ln_ratio_se = math.sqrt(se(a) ** 2 + se(b) ** 2 - 2 * cov)
    ppl_q, ppl_r = math.exp(a.mean()), math.exp(b.mean())
    want = {
        "n_tokens": n, "kld_mean": kld.mean(), "kld_mean_se": se(kld),
        "kld_median": np.median(kld), "kld_max": kld.max(), "kld_min": kld.min(),
        "kld_p90": _llama_percentile(kld, 0.9), "kld_p95": _llama_percentile(kld, 0.95),
        "kld_p99": _llama_percentile(kld, 0.99), "kld_p99_9": _llama_percentile(kld, 0.999),
        "rkld_mean": (kld * 1.1).mean(), "jsd_mean": (kld / 4).mean(),
        "ppl_q": ppl_q, "ppl_ref": ppl_r, "ln_ppl_ratio": a.mean() - b.mean(),
        "ln_ppl_ratio_se": ln_ratio_se, "ppl_ratio": ppl_q / ppl_r,
        "ppl_ratio_se": ppl_q / ppl_r * ln_ratio_se, "ppl_diff": ppl_q - ppl_r,
        "ppl_q_se": ppl_q * se(a), "ppl_ref_se": ppl_r * se(b),
        "ppl_diff_se": math.sqrt((ppl_q * se(a)) ** 2 + (ppl_r * se(b)) ** 2
                                 - 2 * ppl_q * ppl_r * cov),
        "ln_ppl_cor": np.corrcoef(a, b)[0, 1],
        "same_top1": tm.same_top1.mean(),
        "same_top1_se": math.sqrt(tm.same_top1.mean() * (1 - tm.same_top1.mean()) / (n - 1)),
        "dp_mean": dp.mean(), "dp_mean_se": se(dp), "rms_dp": math.sqrt(np.mean(dp ** 2)),
        "rms_dp_se": se(dp ** 2) / (2 * math.sqrt(np.mean(dp ** 2))),
    }
    for k, v in want.items():
        assert st[k] == pytest.approx(v, rel=1e-9, abs=1e-15), k
    # numpy's default (linear) quantile is the same interpolation
    assert st["kld_p99_9"] == pytest.approx(np.quantile(kld, 0.999), rel=1e-12)
    assert set(STATS_KEYS) <= set(st)
    assert st["kld_mean_ci_low"] is None and st["n_windows"] == n


def test_median_even_and_odd() -> None:
    for vals in ([3.0, 1.0, 2.0], [4.0, 1.0, 3.0, 2.0]):
        n = len(vals)
        tm = TokenMetrics(kld=np.array(vals), same_top1=np.ones(n, bool), ref_top1_prob=np.ones(n))
        assert summarize(tm).kld_median == np.median(vals)


def test_without_targets_nll_keys_are_none() -> None:
    st = summarize(_random_tm(np.random.default_rng(1), 50, targets=False)).to_json()
    for k in ("ppl_q", "ppl_ref", "ln_ppl_ratio", "ln_ppl_ratio_se", "ppl_ratio", "ppl_diff",
              "dp_mean", "rms_dp", "ln_ppl_ratio_ci_low", "ln_ppl_ratio_ci_high"):
        assert st[k] is None, k
    assert st["kld_mean"] is not None and st["kld_mean_ci_low"] is not None


def test_few_tokens_have_no_uncertainty() -> None:
    st = summarize(_random_tm(np.random.default_rng(2), 10))
    assert st.kld_mean_se is None and st.ln_ppl_ratio_se is None and st.dp_mean_se is None
    assert st.same_top1_se is not None and st.kld_mean is not None
    empty = summarize(_random_tm(np.random.default_rng(2), 0)).to_json()
    assert empty["n_tokens"] == 0 and empty["kld_mean"] is None
    assert all(b["n"] == 0 for b in empty["kld_buckets"])


def test_confidence_buckets() -> None:
    rng = np.random.default_rng(3)
    tm = _random_tm(rng, 400)
    p = np.concatenate([[0.0, 0.25, 0.5, 0.75, 0.95, 1.0], rng.random(394)])
    tm = TokenMetrics(kld=tm.kld, same_top1=tm.same_top1, ref_top1_prob=p)
    buckets = summarize(tm).to_json()["kld_buckets"]
    assert [(b["lo"], b["hi"]) for b in buckets] == list(itertools.pairwise(BUCKET_EDGES))
    for i, b in enumerate(buckets):
        lo, hi = BUCKET_EDGES[i], BUCKET_EDGES[i + 1]
        mask = (p >= lo) & ((p < hi) if i < 4 else (p <= hi))
        assert b["n"] == mask.sum()
        assert b["kld_mean"] == pytest.approx(tm.kld[mask].mean(), rel=1e-12)


def test_block_bootstrap_against_a_plain_loop() -> None:
    rng = np.random.default_rng(4)
    tm = _random_tm(rng, 300)
    windows = np.sort(rng.integers(0, 12, 300))  # 12 windows of unequal length
    st = summarize(tm, windows, n_boot=500, rng=np.random.default_rng(99))
    assert st.n_windows == 12
    # the same draws, resampled window by window in a plain loop
    draws = np.random.default_rng(99).integers(0, 12, size=(500, 12))
    a, b = tm.nll_q, tm.nll_ref
    assert a is not None and b is not None
    kl_means, ratio_means = [], []
    for row in draws:
        idx = np.concatenate([np.flatnonzero(windows == w) for w in row])
        kl_means.append(tm.kld[idx].mean())
        ratio_means.append(a[idx].mean() - b[idx].mean())
    lo, hi = np.percentile(kl_means, [2.5, 97.5])
    assert (st.kld_mean_ci_low, st.kld_mean_ci_high) == pytest.approx((lo, hi), rel=1e-10)
    lo, hi = np.percentile(ratio_means, [2.5, 97.5])
    assert (st.ln_ppl_ratio_ci_low, st.ln_ppl_ratio_ci_high) == pytest.approx((lo, hi), rel=1e-10)
    assert st.kld_mean_ci_low is not None and st.kld_mean_ci_high is not None
    assert st.kld_mean_ci_low < st.kld_mean < st.kld_mean_ci_high  # type: ignore[operator]
    # reproducible with the same seed, different with another
    again = summarize(tm, windows, n_boot=500, rng=np.random.default_rng(99))
    other = summarize(tm, windows, n_boot=500, rng=np.random.default_rng(7))
    assert again == st and other.kld_mean_ci_low != st.kld_mean_ci_low


def test_correlated_windows_widen_the_interval() -> None:
    # every token in a window shares one KLD level: blocks are the honest unit
    rng = np.random.default_rng(5)
    level = np.repeat(rng.gamma(1.0, 0.1, 40), 25)
    n = level.size
    tm = TokenMetrics(kld=level + rng.gamma(1.0, 0.001, n), same_top1=np.ones(n, bool),
                      ref_top1_prob=np.ones(n))
    per_token = summarize(tm, None, rng=np.random.default_rng(0))
    per_window = summarize(tm, np.repeat(np.arange(40), 25), rng=np.random.default_rng(0))
    w_tok = per_token.kld_mean_ci_high - per_token.kld_mean_ci_low  # type: ignore[operator]
    w_win = per_window.kld_mean_ci_high - per_window.kld_mean_ci_low  # type: ignore[operator]
    assert w_win > 3 * w_tok
