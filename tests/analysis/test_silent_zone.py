"""Silent-zone rules and the minimum detectable effect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.power import mde_paired, mde_unpaired, paired_power
from quantfid.analysis.silent_zone import flips, silent_zone
from quantfid.errors import MismatchError
from quantfid.store.workspace import Workspace


def _outcomes() -> dict[str, dict[str, list[int]]]:
    ref = [1] * 30 + [0] * 10
    same = list(ref)
    worse = [0] * 12 + [1] * 18 + [0] * 10        # 12 losses, 0 gains: McNemar p = 2^-11
    noisy = [0, 0, 1] + [1] * 27 + [1, 1] + [0] * 8  # 2 losses, 2 gains
    return {"ref": {"b": ref}, "same": {"b": same}, "worse": {"b": worse}, "noisy": {"b": noisy}}


def test_rules(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    ws = hand_ws(tmp_path / "w", _outcomes(), {"same": 0.01, "worse": 0.5, "noisy": 0.02})
    c = load_cohort(ws)
    assert sorted(c.quants) == ["noisy", "same", "worse"] and c.reference == "ref"
    fl = flips(c.prompts, "b")  # type: ignore[arg-type]
    at = {q: i for i, q in enumerate(c.quants)}
    assert [int(fl.gains[at[q]]) for q in ("same", "worse", "noisy")] == [0, 0, 2]
    assert [int(fl.losses[at[q]]) for q in ("same", "worse", "noisy")] == [0, 12, 2]
    assert fl.p[at["worse"]] == pytest.approx(stats.binomtest(0, 12, 0.5).pvalue)
    prim = c.variant("kld_mean")
    z = silent_zone(c, "b", prim, band=0.99)
    assert sorted(z.paired or []) == ["noisy", "same"]
    assert sorted(z.band) == ["noisy", "same"]   # 30/40 >= 0.99 * 30/40
    assert sorted(z.lowest_k) == ["noisy", "same"] and z.k == 2
    z = silent_zone(c, "b", prim, band=0.5, k=1)
    assert sorted(z.band) == ["noisy", "same", "worse"] and z.lowest_k == ["same"]
    # a higher-is-better primary metric picks the highest values
    z = silent_zone(c, "b", c.variant("same_top1"), k=1)
    assert z.lowest_k == ["same"]


def test_partial_prompt_set_is_an_error(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    o = _outcomes()
    o["same"]["b"] = o["same"]["b"][:-1]
    ws = hand_ws(tmp_path / "w", o, {"same": 0.01})
    with pytest.raises(MismatchError, match="same"):
        load_cohort(ws)


def test_paired_power_is_exact_binomial() -> None:
    d = 40
    f = np.array([0.5, 0.7, 0.8])
    pw = paired_power(d, f)
    k = np.arange(d + 1)
    reject = np.array([stats.binomtest(int(i), d, 0.5).pvalue <= 0.05 for i in k])
    for fi, pi in zip(f, pw, strict=True):
        assert pi == pytest.approx(stats.binom.pmf(k, d, fi)[reject].sum())
    assert pw[0] <= 0.05  # size at the null


def test_mde_paired_is_the_smallest_effect_with_80_power() -> None:
    n, rate = 500, 0.1
    d, m = mde_paired(n, rate)
    assert d == 50 and m is not None
    f = 0.5 + m / (2 * rate)
    assert paired_power(d, np.array([f]))[0] >= 0.8
    assert paired_power(d, np.array([f - 0.002]))[0] < 0.8
    assert mde_paired(500, 0.0) == (0, None)
    assert mde_paired(500, 0.004)[1] is None  # 2 discordant prompts can never reach 5 %


def test_mde_unpaired_formula() -> None:
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert mde_unpaired(400, 0.7) == pytest.approx(z * np.sqrt(2 * 0.21 / 400))


def test_mean_counts_each_prompt_once(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    out = {"ref": {"b": [1, 1, 0, 0], "b:acc_norm": [1, 1, 1, 0], "c": [1, 0]},
           "q": {"b": [0, 1, 0, 0], "b:acc_norm": [0, 0, 0, 0], "c": [1, 1]}}
    c = load_cohort(hand_ws(tmp_path / "w", out, {"q": 0.1}))
    assert c.prompts is not None and c.prompts.mean_benchmarks == ["b", "c"]
    assert c.scores["mean"][0] == pytest.approx((1 / 4 + 2 / 2) / 2)
    assert c.ref_scores["mean"] == pytest.approx((2 / 4 + 1 / 2) / 2)
    fl = flips(c.prompts, "mean")
    assert (fl.n, int(fl.gains[0]), int(fl.losses[0])) == (6, 1, 1)


def test_mde_bisection_equals_the_grid_scan() -> None:
    for n, rate in ((300, 0.3), (120, 0.05), (2000, 0.012)):
        d, m = mde_paired(n, rate)
        grid = np.linspace(0.5, 1.0, 5001)
        pw = paired_power(d, grid)
        f = grid[np.flatnonzero(pw >= 0.8)[0]]
        assert m == pytest.approx(d / n * (2 * f - 1), rel=1e-12)


def test_prompts_needed_reaches_the_target() -> None:
    from quantfid.analysis.power import prompts_needed

    rate, target = 0.2, 0.05 * 0.6
    n = prompts_needed(rate, target)
    assert n is not None
    m = mde_paired(n, rate)[1]
    assert m is not None and m <= target
    m_less = mde_paired(int(n / 1.05), rate)[1]  # a few percent fewer prompts do not suffice
    assert m_less is None or m_less > target
    assert prompts_needed(0.0, target) is None


def test_resolution_of_zones(tmp_path: Path, hand_ws: Callable[..., Workspace]) -> None:
    from quantfid.analysis.resolution import resolve_all

    c = load_cohort(hand_ws(tmp_path / "w", _outcomes(), {"same": 0.01, "worse": 0.5, "noisy": 0.02}))
    zones = {"b": silent_zone(c, "b", c.variant("kld_mean"))}
    res = resolve_all(c, zones).by_score["b"]
    paired = res["paired"]  # "same" (0 flips) and "noisy" (4 flips of 40): median rate 0.05
    assert paired.members == ["same", "noisy"] or sorted(paired.members) == ["noisy", "same"]
    assert paired.discordance_rate == pytest.approx(0.05) and paired.discordant == 2
    assert paired.status == "unresolved" and paired.mde is None
    assert paired.prompts_needed is not None and paired.prompts_needed > 40
    loose = silent_zone(c, "b", c.variant("kld_mean"), band=0.5)
    assert resolve_all(c, {"b": loose}).by_score["b"]["band"].reasons[0] == "whole cohort"
