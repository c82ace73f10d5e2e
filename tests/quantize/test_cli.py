"""`quantfid cohort list/build/imatrix` on a small model (the loader is swapped for a stub)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from quantfid.backends.base import LoadedModel
from quantfid.cli import main
from quantfid.records import Model

from .conftest import tiny_llama


class _Tok:
    bos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": [ord(c) % 300 + 2 for c in text]}


@pytest.fixture
def stub_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_llama(seed=9)

    def load_hf(spec: str | None = None, *args: object, **kwargs: object) -> LoadedModel:
        return LoadedModel(module=model, tokenizer=_Tok(),
                           info=Model(id="tiny", role="reference", format="hf", hash="h0"))

    monkeypatch.setattr("quantfid.backends.hf.load_hf", load_hf)


def test_build_imatrix_and_resume(tmp_path, stub_loader, capsys) -> None:
    out = tmp_path / "cohort"
    rc = main(["cohort", "build", "--recipes", "Q8_0,rtn-w4g64-asym,Q2_K_S", "--out", str(out),
               "--json"])
    assert rc == 0
    res = {r["recipe"]: r for r in json.loads(capsys.readouterr().out)}
    assert res["Q2_K_S"]["status"] == "unavailable" and "importance matrix" in res["Q2_K_S"]["reason"]
    assert res["Q8_0"]["status"] == "built" and (out / "Q8_0.gguf").exists()
    manifest = json.loads((out / "cohort.json").read_text())
    assert {q["recipe"] for q in manifest["quants"]} == {"Q8_0", "rtn-w4g64-asym"}
    assert manifest["quants"][0]["model"]["bits_per_weight"] == manifest["quants"][0]["bits_per_weight"]
    # a second build keeps what is there
    assert main(["cohort", "build", "--recipes", "Q8_0", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "kept"
    # imatrix from a text file, then the IQ2 recipe builds
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    assert main(["cohort", "imatrix", "--corpus", str(corpus), "--ctx", "64", "--chunks", "4",
                 "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["chunks"] == 4 and (out / "imatrix.npz").exists()
    assert main(["cohort", "build", "--recipes", "Q2_K_S", "--out", str(out), "--format",
                 "safetensors", "--imatrix", str(out / "imatrix.npz"), "--json"]) == 0
    res2 = json.loads(capsys.readouterr().out)[0]
    assert res2["status"] == "built" and res2["report"]["imatrix_hash"]
    assert (out / "Q2_K_S" / "model.safetensors").exists()


def test_bad_recipe_exits_2(tmp_path, stub_loader, capsys) -> None:
    assert main(["cohort", "build", "--recipes", "Q9_K", "--out", str(tmp_path)]) == 2
    assert "unknown recipe" in capsys.readouterr().err


def test_list_on_config_dir(tmp_path, capsys) -> None:
    tiny_llama().config.save_pretrained(tmp_path)
    assert main(["cohort", "list", "--reference", str(tmp_path), "--all", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["Q8_0"]["bits_per_weight"] > 8.4 and rows["Q8_0"]["available"]
    assert not rows["IQ2_XS"]["available"]
    assert np.isclose(rows["rtn-w4g32-sym"]["bits_per_weight"],
                      (sum(p.numel() for p in tiny_llama().parameters() if p.ndim == 2) * 4.5
                       + 5 * 256 * 32) / sum(p.numel() for p in tiny_llama().parameters()))

