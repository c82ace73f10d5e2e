"""`quantfid analyze WORKSPACE` and `quantfid outcomes W` on a synthetic workspace."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis import make_cohort, run_all
from quantfid.cli import main
from quantfid.store.workspace import Workspace


def test_analyze_workspace(small_ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(small_ws.path), "--n-boot", "200", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert list(j) == ["cohort", "correlations", "silent_zone", "resolution", "robustness", "decomposition",
                       "failure_prediction", "router"]
    corpora = {(c["corpus"], c["ctx"]) for c in j["correlations"]}
    assert corpora == {("code", 1024), ("wiki", 512), ("prompts", None)}
    assert main(["analyze", str(small_ws.path), "--n-boot", "100", "--metric", "kld_p99@code:1024"]) == 0
    out = capsys.readouterr().out
    assert "primary metric: kld_p99@code:1024" in out and "verdict" in out
    assert main(["analyze", str(small_ws.path), "--metric", "nope"]) == 2


def test_robustness_bh_per_family(small_ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(small_ws.path), "--n-boot", "100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["robustness"]["rows"]
    fam = [r for r in rows if r["score"] == "mean" and r["subset"] == "full" and r["p"] is not None]
    ref = stats.false_discovery_control([r["p"] for r in fam], method="bh")
    assert [r["p_bh"] for r in fam] == pytest.approx(list(ref))


def test_outcomes_command(small_ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outcomes", str(small_ws.path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"model", "benchmark", "n", "accuracy", "gains", "losses", "mcnemar_p"} <= set(rows[0])
    outs = small_ws.outcomes()
    ref = {(o.benchmark, o.prompt_id): o.passed for o in outs if o.model == "ref"}
    for r in rows:
        mine = {(o.benchmark, o.prompt_id): o.passed for o in outs
                if o.model == r["model"] and o.benchmark == r["benchmark"]}
        assert r["n"] == len(mine)
        assert r["accuracy"] == pytest.approx(sum(mine.values()) / len(mine))
        if r["model"] == "ref":
            assert r["gains"] is None and r["mcnemar_p"] is None
            continue
        g = sum(1 for k, v in mine.items() if v and not ref[k])
        loss = sum(1 for k, v in mine.items() if ref[k] and not v)
        assert (r["gains"], r["losses"]) == (g, loss)
        assert r["mcnemar_p"] == pytest.approx(stats.binomtest(g, g + loss, 0.5).pvalue if g + loss else 1.0)
    assert main(["outcomes", str(small_ws.path)]) == 0
    assert "mcnemar_p" in capsys.readouterr().out


def test_partial_workspaces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sc = make_cohort(np.random.default_rng(2), n_quants=5, n_prompts=80)
    only_out = Workspace(tmp_path / "o")
    only_fid = Workspace(tmp_path / "f")
    for ws in (only_out, only_fid):
        ws.add_model(sc.reference)
        for q in sc.quants:
            ws.add_model(q)
    only_out.add_outcomes("all", sc.outcomes)
    for r in sc.fidelity:
        only_fid.write_part("fidelity", str(r["model"]), [r])
    j = run_all(only_out, n_boot=50).to_json()
    assert j["correlations"] == [] and j["router"]["pooled"] is None
    assert j["silent_zone"]["mean"]["lowest_k"] == [] and j["decomposition"]["identity_holds"]
    assert len(j["decomposition"]["rows"]) == 5 * 4
    j = run_all(only_fid, n_boot=50).to_json()
    assert j["correlations"] == [] and j["silent_zone"] == {}
    assert main(["analyze", str(tmp_path / "f"), "--n-boot", "50"]) == 0
    assert "no rank correlation to judge" in capsys.readouterr().out.lower()
    empty = Workspace(tmp_path / "e")
    empty.add_model(sc.reference)
    assert main(["analyze", str(tmp_path / "e")]) == 2
