"""Exact binomial tests, intervals and BH against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis.binomial import clopper_pearson, sign_test_p, wilson
from quantfid.analysis.fdr import bh_adjust


@pytest.mark.parametrize(("k", "n"), [(0, 0), (0, 1), (3, 10), (10, 10), (7, 31), (250, 480)])
def test_sign_test_matches_binomtest(k: int, n: int) -> None:
    p = float(sign_test_p(k, n))
    ref = 1.0 if n == 0 else stats.binomtest(k, n, 0.5).pvalue
    assert p == pytest.approx(ref, rel=1e-9, abs=1e-15)


@pytest.mark.parametrize(("k", "n"), [(0, 5), (3, 10), (10, 10), (120, 400)])
def test_clopper_pearson_and_wilson_match_scipy(k: int, n: int) -> None:
    lo, hi = clopper_pearson(k, n)
    ref = stats.binomtest(k, n).proportion_ci(method="exact")
    assert float(lo) == pytest.approx(ref.low, abs=1e-9)
    assert float(hi) == pytest.approx(ref.high, abs=1e-9)
    lo, hi = wilson(k, n)
    ref = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert float(lo) == pytest.approx(ref.low, abs=1e-9)
    assert float(hi) == pytest.approx(ref.high, abs=1e-9)


def test_bh_matches_false_discovery_control() -> None:
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=30), rng.uniform(0, 0.01, size=10), [0.02, 0.02]])
    got = bh_adjust(list(p))
    ref = stats.false_discovery_control(p, method="bh")
    assert np.allclose(np.array(got, dtype=float), ref, rtol=1e-12)


def test_bh_keeps_none() -> None:
    got = bh_adjust([0.01, None, 0.04])
    ref = stats.false_discovery_control([0.01, 0.04], method="bh")
    assert got[1] is None
    assert got[0] == pytest.approx(ref[0]) and got[2] == pytest.approx(ref[1])
