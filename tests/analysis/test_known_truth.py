"""Synthetic cohorts with a known truth: volume without direction collapses near baseline,
the reverse construction does not; and the verdict says so with the numbers."""

from __future__ import annotations

import numpy as np
import pytest

from quantfid.analysis import run_all, verdict
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
    v = verdict(j)
    assert "ranks the cohort" in v.headline and "not near baseline" in v.headline
    assert f"{full['rho']:.2f}" in v.findings[0]
    assert v.flags["ranks_full_cohort"] and all(v.flags["silent_by_rule"].values())


def test_reverse_construction_keeps_the_link(direction_ws: Workspace) -> None:
    j = run_all(direction_ws, n_boot=1000, k=10, rng=np.random.default_rng(0)).to_json()
    full = _entry(j, None)
    assert full["rho"] < -0.95 and full["ci_high"] < 0
    s = _entry(j, "lowest_k")
    assert s["n"] == 10 and s["rho"] == pytest.approx(-1.0)
    assert s["p"] < 0.01 and s["p_method"] == "permutation-mc" and s["ci_high"] < 0
    v = verdict(j)
    assert "still orders the silent zone" in v.headline
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
