"""Selection of the configured cohort, automatic k, the noise floor and numerics warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantfid.analysis import run_all
from quantfid.analysis.cohort import load_cohort
from quantfid.analysis.noise_floor import overlap
from quantfid.analysis.numerics import family, warnings
from quantfid.analysis.selection import Selection
from quantfid.errors import QuantfidError
from quantfid.records import Model
from quantfid.store.workspace import Workspace


def test_selection_restricts_models_variants_benchmarks(small_ws: Workspace) -> None:
    full = load_cohort(small_ws)
    keep = full.quants[:5]
    sel = Selection.of(models=keep, variants=[("wiki", 512)], benchmarks=["arc", "code"])
    c = load_cohort(small_ws, sel)
    assert c.quants == keep
    assert {(v.corpus, v.ctx) for v in c.variants} == {("wiki", 512), ("prompts", None)}
    assert c.prompts is not None and c.prompts.benchmarks == ["arc", "code"]
    assert list(c.scores) == ["arc", "code", "mean"]
    j = run_all(small_ws, n_boot=20, select=sel).to_json()
    assert j["cohort"]["quants"] == keep and j["cohort"]["selection"]["models"] == keep
    assert {r["model"] for r in j["failure_prediction"]["rows"]} == set(keep)
    assert {b["benchmark"] for b in j["router"]["per_benchmark"]} == {"arc", "code"}
    # the other quants do not change the selected cohort's numbers
    mean_arc = {r["model"]: r["scores"]["arc"]["accuracy"] for r in j["cohort"]["rows"]}
    whole = {r["model"]: r["scores"]["arc"]["accuracy"]
             for r in run_all(small_ws, n_boot=20).to_json()["cohort"]["rows"]}
    assert all(whole[m] == mean_arc[m] for m in keep)


@pytest.mark.parametrize("sel, what", [(Selection.of(models=["nope"]), "models"),
                                       (Selection.of(variants=[("wiki", 64)]), "corpus x ctx"),
                                       (Selection.of(benchmarks=["mmlu"]), "benchmarks")])
def test_selection_of_unknown_names_is_an_error(small_ws: Workspace, sel: Selection,
                                                what: str) -> None:
    with pytest.raises(QuantfidError, match=what):
        load_cohort(small_ws, sel)


def test_k_zero_or_none_is_automatic(small_ws: Workspace) -> None:
    auto = run_all(small_ws, n_boot=20, k=None).to_json()
    zero = run_all(small_ws, n_boot=20, k=0).to_json()
    paired = len(auto["silent_zone"]["mean"]["paired"])
    assert auto["cohort"]["settings"]["k"]["mean"] == paired == zero["cohort"]["settings"]["k"]["mean"]
    assert zero["cohort"]["settings"]["k_automatic"] is True
    assert zero["silent_zone"] == auto["silent_zone"]
    three = run_all(small_ws, n_boot=20, k=3).to_json()
    assert len(three["silent_zone"]["mean"]["lowest_k"]) == 3
    with pytest.raises(QuantfidError, match="k must be"):
        run_all(small_ws, n_boot=20, k=-1)


def test_noise_floor_table_and_overlap(tmp_path: Path, small_ws: Workspace) -> None:
    import shutil

    ws = Workspace(shutil.copytree(small_ws.path, tmp_path / "w"))
    rows = [r for r in ws.rows("fidelity") if r["corpus"] == "wiki"]
    best = min(rows, key=lambda r: r["kld_mean"])
    floor = {**best, "model": "noise:bf16", "method": "bf16", "kld_mean": best["kld_mean"] * 1.5,
             "kld_mean_ci_low": best["kld_mean"] * 1.4, "kld_mean_ci_high": best["kld_mean"] * 1.6}
    ws.write_part("noise_floor", "noise@wiki:512", [floor], "h")
    other = {**floor, "reference": "someone-else"}
    ws.write_part("noise_floor", "other@wiki:512", [other], "h")
    c = load_cohort(ws)
    key = "kld_mean@wiki:512"
    assert c.noise_floor[key]["value"] == pytest.approx(best["kld_mean"] * 1.5)
    assert "kld_mean@code:1024" not in c.noise_floor
    assert any("noise-floor rows against another reference" in w for w in c.warnings)
    flags = c.floor_overlap(key)
    assert flags is not None
    v = c.variants.index(next(x for x in c.variants if x.key == key))
    lo = c.metric_ci[key][0]
    assert np.array_equal(flags == 1, lo <= best["kld_mean"] * 1.6)
    assert flags[c.quants.index(best["model"])] == 1 and flags.sum() < len(c.quants)
    j = run_all(ws, n_boot=20).to_json()
    rows_j = {r["model"]: r["metrics"][key]["within_noise_floor"] for r in j["cohort"]["rows"]}
    assert rows_j[best["model"]] is True
    assert j["cohort"]["noise_floor"][key]["method"] == "bf16"
    assert c.values[v].size == len(c.quants)


def test_overlap_rule() -> None:
    floor = {"value": 0.01, "ci_low": 0.008, "ci_high": 0.012}
    val = np.array([0.011, 0.02, 0.02, np.nan])
    lo = np.array([0.009, 0.013, np.nan, np.nan])
    hi = np.array([0.013, 0.03, np.nan, np.nan])
    got = overlap("kld_mean", val, lo, hi, floor)
    assert got[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(got[3])
    # higher-is-better: top-1 agreement reaches a floor of 0.99 from below
    got = overlap("same_top1", np.array([0.995, 0.9]), None, None, {"value": 0.99, "ci_low": None,
                                                                    "ci_high": None})
    assert got.tolist() == [1.0, 0.0]


def _m(mid: str, scheme: str, backend: str, numerics: str) -> Model:
    return Model(mid, scheme=scheme, extra={"backend": backend, "numerics": numerics})


def test_numerics_warnings() -> None:
    assert family("Q4_K_M") == family("IQ4_XS") == family("q8_0") == "ggml"
    assert family("rtn-w4g64-asym") == "rtn" and family(None) is None
    normal = [_m("Q8_0", "Q8_0", "hf", "ggml-cpu"), _m("Q4_0", "Q4_0", "hf", "ggml-cpu"),
              _m("rtn4", "rtn-w4g64-asym", "hf", "weights")]
    assert warnings(normal) == []  # GGML under ggml-cpu beside RTN under weights: the default
    mixed = [*normal, _m("Q6_K", "Q6_K", "hf", "weights")]
    w = warnings(mixed)
    assert len(w) == 1 and "ggml quants" in w[0] and "Q6_K" in w[0]
    backends = [*normal, _m("Q5_0", "Q5_0", "llamacpp", "ggml-cpu")]
    w = warnings(backends)
    assert len(w) == 1 and "different backends" in w[0] and "llamacpp: Q5_0" in w[0]
