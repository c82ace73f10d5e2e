"""``quantfid bench`` end to end with a tiny byte-level model standing in for the loader."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantfid.backends.base import LoadedModel
from quantfid.cli import main
from quantfid.records import Model
from quantfid.store.workspace import Workspace

from .helpers import ByteTokenizer, tiny_llama


def test_bench_cli_reference_then_quant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import quantfid.commands.bench as cmd

    ref_module = tiny_llama(np.random.default_rng(3), vocab=256)

    def fake_load(args: Any, ws: Workspace) -> LoadedModel:
        role = "reference" if args.reference else "quant"
        module = ref_module if args.reference else copy.deepcopy(ref_module)
        return LoadedModel(module=module, tokenizer=ByteTokenizer(),
                           info=Model(id=args.name or args.model, role=role, hash=args.model))

    monkeypatch.setattr(cmd, "_load", fake_load)
    ws = tmp_path / "ws"
    assert main(["bench", "--model", "tiny", "--reference", "--task", "cloze,arith_mc",
                 "--limit", "3", "--workspace", str(ws), "--json"]) == 0
    ref_rows = json.loads(capsys.readouterr().out)
    assert [(r["model"], r["benchmark"], r["n"]) for r in ref_rows] == [
        ("tiny", "cloze", 3), ("tiny", "arith_mc", 3)]
    assert main(["bench", "--model", "twin", "--task", "cloze", "--limit", "3",
                 "--workspace", str(ws)]) == 0
    text = capsys.readouterr().out
    assert "twin" in text and "cloze" in text
    w = Workspace(ws)
    assert {o.benchmark for o in w.outcomes()} == {"cloze", "cloze:acc_norm", "arith_mc",
                                                  "arith_mc:acc_norm"}
    assert len(w.prompt_fidelity()) == 3
    assert max(r.kld_mean for r in w.prompt_fidelity()) < 1e-5
    # a quant on a task the reference has not run is a clear error (exit 2)
    assert main(["bench", "--model", "twin", "--task", "humaneval_mc", "--limit", "2",
                 "--workspace", str(ws)]) == 2
    assert "reference" in capsys.readouterr().err
