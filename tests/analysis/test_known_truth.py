"""Synthetic cohorts with a known truth: volume without direction collapses near baseline,
the reverse construction does not; and the verdict says so with the numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantfid.analysis import make_cohort, run_all, verdict
from quantfid.store.workspace import Workspace


def _entry(j: dict, rule: str | None, score: str = "mean") -> dict:
    return next(c for c in j["correlations"] if c["metric"] == "kld_mean" and c["corpus"] == "wiki"
                and c["score"] == score and c["rule"] == rule)


@pytest.fixture(scope="module")
def volume_json(volume_ws: Workspace) -> dict:
    return run_all(volume_ws, n_boot=1000, rng=np.random.default_rng(0)).to_json()


def test_volume_cohort_collapses_in_silent_zone(volume_json: dict) -> None:
    j = volume_json
    full = _entry(j, None)
    assert full["n"] == 30 and full["rho"] < -0.6 and full["ci_high"] < 0 and full["p"] < 1e-4
    for rule in ("paired", "band", "lowest_k"):
        s = _entry(j, rule)
        assert s["n"] >= 5, rule
        assert s["ci_low"] <= 0 <= s["ci_high"], (rule, s)
        assert s["p"] > 0.05
    # the volume of flips still tracks KLD over the full cohort; the direction does not
    dec = {(c["quantity"], c["benchmark"], c["rule"]): c for c in j["decomposition"]["correlations"]}
    assert dec[("volume", "composite", None)]["rho"] > 0.8
    assert j["decomposition"]["identity_holds"]
    # the paired zone is resolved: its benchmark sees drops of well under 5 % of the score
    res = j["resolution"]["scores"]["mean"]["paired"]
    assert res["status"] == "resolved" and res["mde_relative"] < 0.05
    v = verdict(j)
    assert "orders these 30 quants" in v.headline and "but not among" in v.headline
    assert "paired test" in v.headline and v.flags["headline_rule"] == "paired"
    assert f"{full['rho']:.2f}" in v.findings[0] and "rho" in v.findings[0]
    assert v.flags["ranks_full_cohort"] and v.flags["silent_by_rule"]["paired"] is True
    assert "no detectable link" in v.findings[1]
    for jargon in ("t-approximation", "lowest_k", "link persists", "permutation"):
        assert jargon not in v.headline and all(jargon not in f for f in v.findings)


def test_unresolved_zone_gives_no_finding(tmp_path: Path) -> None:
    """Few prompts: the paired zone cannot see a 5 % drop; the verdict says the sample cannot
    tell (and how many prompts would), never that the link holds or collapses."""
    ws = Workspace(tmp_path / "w")
    make_cohort(np.random.default_rng(7), kind="volume", n_quants=12, n_prompts=120).write(ws)
    j = run_all(ws, n_boot=300, rng=np.random.default_rng(0)).to_json()
    res = j["resolution"]["scores"]["mean"]
    assert res["paired"]["status"] == "unresolved" and res["paired"]["prompts_needed"] > 120
    v = verdict(j)
    assert "cannot be told" in v.headline and "prompts" in v.headline
    assert f"{res['paired']['prompts_needed']:,}" in v.headline
    assert "but not among" not in v.headline and "including among" not in v.headline
    assert v.flags["silent_by_rule"]["paired"] is None
    assert "unresolved" in v.findings[1]
    assert "link holds" not in " ".join(v.findings) and "no detectable link" not in " ".join(v.findings)
    assert any("Unresolved" in c for c in v.caveats)


def test_reverse_construction_keeps_the_link(direction_ws: Workspace) -> None:
    j = run_all(direction_ws, n_boot=1000, k=10, rng=np.random.default_rng(0)).to_json()
    full = _entry(j, None)
    assert full["rho"] < -0.95 and full["ci_high"] < 0
    s = _entry(j, "lowest_k")
    assert s["n"] == 10 and s["rho"] == pytest.approx(-1.0)
    assert s["p"] < 0.01 and s["p_method"] == "permutation-mc" and s["ci_high"] < 0
    assert j["resolution"]["scores"]["mean"]["lowest_k"]["status"] == "resolved"
    v = verdict(j)
    # the paired zone holds 2 quants whose few flips are all losses: unresolved; the headline
    # rests on the first resolved zone with enough quants, the 10 with the lowest KLD
    assert v.flags["headline_rule"] == "lowest_k"
    assert "including among the 10 quants with the lowest mean KLD" in v.headline
    assert "the link holds" in v.findings[1]
    # losses carry the KLD: failures are predicted and routing beats chance
    fp = j["failure_prediction"]["summary"]["ref_passed"]
    assert fp["ratio_median"] > 2 and fp["auroc_median"] > 0.8
    assert j["router"]["pooled"]["ci_low"] > 0.5


def test_volume_failure_prediction_is_weak(volume_json: dict) -> None:
    fp = volume_json["failure_prediction"]["summary"]["all"]
    assert 0.9 < fp["ratio_median"] < 1.2 and 0.45 < fp["auroc_median"] < 0.56


def test_json_top_level_and_shapes(volume_json: dict) -> None:
    j = volume_json
    assert list(j) == ["cohort", "correlations", "silent_zone", "resolution", "robustness", "decomposition",
                       "failure_prediction", "router"]
    keys = ["metric", "score", "subset", "rule", "n", "rho", "p", "p_method", "ci_low", "ci_high",
            "tau", "tau_p", "corpus", "ctx"]
    assert all(list(c) == keys for c in j["correlations"])
    benches = ["arc", "code", "hella", "wino"]
    assert list(j["silent_zone"]) == [*benches, "mean"]
    assert all(list(z) == ["paired", "band", "lowest_k"] for z in j["silent_zone"].values())
    n_var = len(j["cohort"]["variants"])
    assert n_var == 16  # 15 stats on one corpus + per-prompt KLD
    assert len(j["correlations"]) == n_var * 5 * 4
    assert len(j["robustness"]["rows"]) == len(j["correlations"])
    assert "ref" not in j["cohort"]["quants"]
    assert all(r["model"] != "ref" for r in j["failure_prediction"]["rows"])
    assert all("ref" not in (p["a"], p["b"]) for p in j["router"]["pairs"])
    import json
    json.dumps(j)  # serialisable
