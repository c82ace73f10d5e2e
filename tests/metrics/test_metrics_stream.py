"""FidelityAccumulator fed in chunks gives the batch summarize() result."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantfid.metrics import FidelityAccumulator, TokenMetrics, summarize

# order statistics, counts and sizes: identical; everything from sums: equal up to rounding
_EXACT = ("n_tokens", "kld_median", "kld_p90", "kld_p95", "kld_p99", "kld_p99_9", "kld_max",
          "kld_min", "n_windows", "same_top1", "same_top1_se", "ci_method", "ci_block_tokens")


def _tm(rng: np.random.Generator, n: int, targets: bool) -> TokenMetrics:
    kld = rng.exponential(0.05, n) * (rng.random(n) < 0.8)  # zeros make ties in percentiles
    nll_ref = rng.gamma(2.0, 1.0, n)
    nll_q = nll_ref + rng.normal(0.0, 0.2, n)
    return TokenMetrics(
        kld=kld, same_top1=rng.random(n) < 0.85, ref_top1_prob=rng.random(n), rkld=kld * 0.9,
        jsd=kld * 0.2, nll_ref=nll_ref if targets else None, nll_q=nll_q if targets else None,
        dp=(np.exp(-nll_q) - np.exp(-nll_ref)) if targets else None,
        top5_overlap=rng.integers(0, 6, n) / 5, top10_overlap=rng.integers(0, 11, n) / 10)


def _slice(tm: TokenMetrics, lo: int, hi: int) -> TokenMetrics:
    return TokenMetrics(**{k: None if v is None else v[lo:hi] for k, v in vars(tm).items()})


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k == "kld_buckets":
            assert [x["n"] for x in a[k]] == [x["n"] for x in b[k]]
            for x, y in zip(a[k], b[k], strict=True):
                assert (x["kld_mean"] is None) == (y["kld_mean"] is None)
                if x["kld_mean"] is not None:
                    assert math.isclose(x["kld_mean"], y["kld_mean"], rel_tol=1e-9, abs_tol=1e-15)
        elif k in _EXACT or a[k] is None or b[k] is None:
            assert a[k] == b[k], k
        else:
            assert math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-12), (k, a[k], b[k])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400),
       cuts=st.lists(st.integers(0, 400), max_size=8), targets=st.booleans(),
       windowed=st.booleans(), n_windows=st.integers(1, 30))
def test_streaming_equals_batch(seed: int, n: int, cuts: list[int], targets: bool,
                                windowed: bool, n_windows: int) -> None:
    rng = np.random.default_rng(seed)
    tm = _tm(rng, n, targets)
    # window ids in any order (not sorted), windows may span several updates
    windows = rng.integers(0, n_windows, n) * 7 - 3 if windowed else None
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    # every other chunk goes through a second accumulator, merged in order
    acc, pending = FidelityAccumulator(), None
    for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        part = (_slice(tm, lo, hi), None if windows is None else windows[lo:hi])
        if k % 2 == 0:
            acc.update(*part)
        else:
            pending = FidelityAccumulator()
            pending.update(*part)
            acc.merge(pending)
    assert acc.n_tokens == n
    streamed = acc.result(n_boot=200, rng=np.random.default_rng(seed + 1)).to_json()
    batch = summarize(tm, windows, n_boot=200, rng=np.random.default_rng(seed + 1)).to_json()
    _assert_same(streamed, batch)


def test_incomplete_nlls_give_no_perplexity() -> None:
    """A chunk without NLLs, or with a NaN among them (a server that did not return a
    target's log-prob), leaves the whole run without perplexity rather than a biased one;
    the KLD statistics are those of every token, streamed or merged alike."""
    rng = np.random.default_rng(0)
    with_nll, without = _tm(rng, 20, True), _tm(rng, 20, False)
    nll_q = np.array(with_nll.nll_q, dtype=np.float64)
    nll_q[3] = np.nan
    holed = dataclasses.replace(with_nll, nll_q=nll_q)
    full = FidelityAccumulator()
    full.update(with_nll)
    assert full.result(n_boot=0).ppl_q is not None
    for second in (without, holed):
        acc, merged = FidelityAccumulator(), FidelityAccumulator()
        acc.update(with_nll)
        acc.update(second)
        other = FidelityAccumulator()
        other.update(second)
        merged.update(with_nll)
        merged.merge(other)
        for a in (acc, merged):
            res = a.result(n_boot=0)
            assert res.ppl_q is None and res.ppl_ref is None and res.n_tokens == 40
            want = np.concatenate([with_nll.kld, second.kld]).mean()
            assert res.kld_mean == pytest.approx(float(want), rel=1e-12)
