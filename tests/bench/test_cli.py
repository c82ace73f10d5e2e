"""``quantfid bench`` end to end on tiny model directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantfid.cli import main
from quantfid.store.workspace import Workspace

from .helpers import tiny_family


def test_bench_cli_reference_then_quant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fam = tiny_family(tmp_path / "models", {"q": 0.0})
    ws = tmp_path / "ws"
    assert main(["bench", "--model", str(fam["ref"]), "--reference", "--task", "cloze,arith_mc",
                 "--limit", "3", "--workspace", str(ws), "--json"]) == 0
    ref_rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["benchmark"], r["n"]) for r in ref_rows] == [
        ("ref", "cloze", 3), ("ref", "arith_mc", 3)]
    assert main(["bench", "--model", str(fam["q"]), "--name", "twin", "--task", "cloze",
                 "--limit", "3", "--workspace", str(ws)]) == 0
    text = capsys.readouterr().out
    assert "twin" in text and "cloze" in text
    w = Workspace(ws)
    assert {o.benchmark for o in w.outcomes()} == {"cloze", "cloze:acc_norm", "arith_mc",
                                                  "arith_mc:acc_norm"}
    assert len(w.prompt_fidelity()) == 3
    assert max(r.kld_mean for r in w.prompt_fidelity()) < 1e-5  # an identical twin
    # a quant on a task the reference has not run: the reference's unit runs first
    assert main(["bench", "--model", str(fam["q"]), "--name", "twin", "--task", "humaneval_mc",
                 "--limit", "2", "--workspace", str(ws), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["model"] == "twin" and rows[0]["kld_mean"] < 1e-5
    assert {o.model for o in Workspace(ws).outcomes() if o.benchmark == "humaneval_mc"} == {
        "ref", "twin"}


def test_bench_cli_bad_input_changes_nothing(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "new"
    assert main(["bench", "--task", "cloze", "--limit", "0", "--workspace", str(ws)]) == 2
    assert "positive integer" in capsys.readouterr().err and not ws.exists()
    assert main(["bench", "--task", "nope", "--workspace", str(ws)]) == 2
    assert "unknown task" in capsys.readouterr().err and not ws.exists()
    assert main(["bench", "--model", "Q9_Z", "--workspace", str(ws)]) == 2
    assert "neither a file" in capsys.readouterr().err and not ws.exists()
