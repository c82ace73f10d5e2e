"""Router against a plain loop over pairs and prompts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.router import route
from quantfid.store.workspace import Workspace


def test_router_matches_loop(small_ws: Workspace) -> None:
    c = load_cohort(small_ws)
    pd = c.prompts
    assert pd is not None
    res = route(c)
    assert len(res.pairs) == len(c.quants) * (len(c.quants) - 1) // 2
    tot = [0, 0, 0]
    for a_name, b_name, st in res.pairs:
        a, b = c.quants.index(a_name), c.quants.index(b_name)
        dis = ties = correct = 0
        for p in range(pd.bench.size):
            if pd.passed[a, p] == pd.passed[b, p]:
                continue
            dis += 1
            if pd.kld[a, p] == pd.kld[b, p]:
                ties += 1
                continue
            pick = a if pd.kld[a, p] < pd.kld[b, p] else b
            correct += bool(pd.passed[pick, p])
        assert (st.disagree, st.ties, st.correct) == (dis, ties, correct)
        if st.decided:
            bt = stats.binomtest(correct, dis - ties, 0.5)
            assert st.p == pytest.approx(bt.pvalue)
            ci = bt.proportion_ci(method="exact")
            assert st.ci_low == pytest.approx(ci.low) and st.ci_high == pytest.approx(ci.high)
        tot = [tot[0] + dis, tot[1] + ties, tot[2] + correct]
    assert res.pooled is not None
    assert (res.pooled.disagree, res.pooled.ties, res.pooled.correct) == tuple(tot)
    assert sum(s.disagree for s in res.per_benchmark) == tot[0]


def test_ties_and_reference_excluded(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    out = {"ref": {"b": [1, 1, 1, 1]}, "x": {"b": [1, 0, 1, 0]}, "y": {"b": [0, 1, 1, 1]}}
    kl = {"x": {"b": [0.1, 0.5, 0.1, 0.2]}, "y": {"b": [0.3, 0.2, 0.1, 0.2]}}
    ws = hand_ws(tmp_path / "w", out, {"x": 0.1, "y": 0.2}, kl)
    res = route(load_cohort(ws), np.array([True, True]), "paired")
    assert len(res.pairs) == 1
    _, _, st = res.pairs[0]
    # disagree on p0 (x passes, lower KLD: correct), p1 (y passes, lower: correct), p3 (tie)
    assert (st.disagree, st.ties, st.decided, st.correct) == (3, 1, 2, 2)
    assert res.pooled_silent is not None and res.pooled_silent.correct == 2
