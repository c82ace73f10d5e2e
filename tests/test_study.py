"""The study: configuration, and ``quantfid study --quick`` end to end, resumed, re-reported."""

from __future__ import annotations

import dataclasses
import json
import tomllib

import pytest

from quantfid import cli, config
from quantfid.errors import QuantfidError
from quantfid.store.workspace import Workspace


def test_default_config_roundtrips_and_meets_the_budget(capsys):
    assert cli.main(["study", "--print-default-config"]) == 0
    text = capsys.readouterr().out
    data = tomllib.loads(text)
    cfg = config.from_dict(data)
    assert cfg == dataclasses.replace(config.preset("default"), preset="custom")
    assert len(set(cfg.recipes)) >= 28
    assert set(cfg.contexts) == {512, 2048} and len(cfg.corpora) >= 3
    assert sum(b.limit or 0 for b in cfg.benchmarks) >= 300 and len(cfg.benchmarks) >= 3


def test_presets_sizes():
    quick, full = config.preset("quick"), config.preset("full")
    assert len(set(quick.recipes)) >= 8 and max(quick.contexts) <= 256
    assert 24 <= sum(b.limit or 0 for b in quick.benchmarks) <= 60
    assert sum(b.limit or 0 for b in full.benchmarks) >= 600
    assert sum(full.chunks) > sum(config.preset("default").chunks)


def test_config_file_overrides_and_errors(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('[quants]\nrecipes = ["Q8_0", "rtn-w4g64-asym"]\n[measure]\ncontexts = [64]\n'
                 '[[benchmarks]]\ntask = "arith_mc"\nlimit = 5\n[analysis]\nseed = 7\n')
    cfg = config.load(p)
    assert cfg.recipes == ("Q8_0", "rtn-w4g64-asym") and cfg.contexts == (64,) and cfg.chunks == (1,)
    assert cfg.benchmarks == (config.BenchTask("arith_mc", 5),) and cfg.analysis.seed == 7
    assert cfg.corpora == config.preset("default").corpora  # untouched tables keep the default
    p.write_text("[measure]\ncontext = [64]\n")
    with pytest.raises(QuantfidError, match=r"s\.toml \[measure\]: unknown key\(s\) \['context'\]"):
        config.load(p)
    p.write_text("[measure]\ncontexts = [512, 2048]\nchunks = [1]\n")
    with pytest.raises(QuantfidError, match="one positive integer per context length"):
        config.load(p)
    p.write_text("[analysis\n")
    with pytest.raises(QuantfidError, match="not valid TOML"):
        config.load(p)
    with pytest.raises(QuantfidError, match="config file not found"):
        config.load(tmp_path / "nope.toml")


def _parts(ws_path, table):
    return sorted(x.name for x in (ws_path / "tables" / table).glob("*.parquet"))


@pytest.mark.slow
def test_quick_study_end_to_end_resume_and_report(tmp_path, capsys):
    out = tmp_path / "study"
    assert cli.main(["study", "--quick", "--out", str(out), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    quick = config.preset("quick")
    ws = Workspace(out, create=False)
    assert ws.reference is not None and len(ws.models("quant")) == len(quick.recipes) >= 8
    n_windows = len(quick.corpora) * len(quick.contexts)
    assert len(_parts(out, "fidelity")) == len(quick.recipes) * n_windows
    assert len(_parts(out, "outcomes")) == (len(quick.recipes) + 1) * len(quick.benchmarks)
    fid = ws.rows("fidelity")
    assert all(r["kld_mean"] is not None and r["kld_mean"] >= 0 for r in fid)
    by_bits = sorted(ws.models("quant"), key=lambda m: m.bits_per_weight or 0.0)
    assert by_bits[0].bits_per_weight < 4 < 8 <= by_bits[-1].bits_per_weight
    most = [r["kld_mean"] for r in fid if r["model"] == by_bits[-1].id]
    fewest = [r["kld_mean"] for r in fid if r["model"] == by_bits[0].id]
    assert len(most) == len(fewest) == n_windows
    assert max(most) < min(fewest)  # the most bits drift less on every corpus and context
    for f in ("report.html", "report.md", "summary.json", "analysis.json"):
        assert (out / f).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert {"cohort", "correlations", "silent_zone", "robustness", "decomposition",
            "failure_prediction", "router", "provenance", "verdict"} <= set(summary)
    assert summary["verdict"] == verdict
    assert verdict["headline"] and verdict["findings"] and "rho" in verdict["findings"][0]
    timings = summary["provenance"]["timings_s"]
    assert {"setup", "reference", "quantize", "measure", "bench", "analysis", "report"} <= set(timings)
    assert "4-bit checkpoint" in (out / "report.html").read_text()
    assert list((out / "plots").glob("*.png"))

    # re-run: every unit is done, nothing is quantized or measured
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "tables").rglob("*.parquet")}
    assert cli.main(["study", "--quick", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == verdict
    t2 = json.loads((out / "summary.json").read_text())["provenance"]
    n_units = summary["provenance"]["units"]["run"]  # every unit of the first run
    assert n_units == len(_parts(out, "fidelity")) + len(_parts(out, "outcomes")) + \
        len(_parts(out, "noise_floor")) + len(list((out / "arrays" / "reference").iterdir()))
    assert t2["units"] == {"run": 0, "skipped": n_units}
    assert "quantize" not in t2["timings_s"] and "measure" not in t2["timings_s"]
    assert {p: p.stat().st_mtime_ns for p in (out / "tables").rglob("*.parquet")} == mtimes

    # a lost unit (as after kill -9) is redone alone
    victim = out / "tables" / "fidelity" / _parts(out, "fidelity")[0]
    victim.unlink()
    assert cli.main(["study", "--quick", "--out", str(out)]) == 0
    capsys.readouterr()
    t3 = json.loads((out / "summary.json").read_text())["provenance"]
    assert t3["units"]["run"] == 1 and victim.exists()

    # the report alone, from the workspace, into another directory: the same verdict
    rep = tmp_path / "rep"
    assert cli.main(["report", str(out), "--out", str(rep), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == verdict
    assert (rep / "report.html").is_file() and (rep / "summary.json").is_file()
    assert cli.main(["report", str(out), "--out", str(rep), "--stored", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == verdict
