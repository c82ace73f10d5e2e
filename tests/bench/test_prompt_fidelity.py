"""Benchmark units on tiny random models (saved as model directories), checked against plain
loops: outcomes against one forward per choice, per-prompt fidelity against scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

from quantfid.bench.run import measure_prompts, read_prompts_jsonl, run_tasks
from quantfid.bench.types import ChoicePrompt, TextPrompt
from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.models import parse_spec
from quantfid.store.workspace import Workspace

from .helpers import tiny_family

LETTERS = "abcdefghij"


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_family(tmp_path_factory.mktemp("fam"), {"q1": 0.02, "q2": 0.08})


def _model(path: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _tok(path: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _full_lsm(module: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = module(input_ids=torch.from_numpy(ids[None, :-1])).logits[0].double().numpy()
    return log_softmax(logits, axis=-1)


def test_outcomes_and_fidelity_match_plain_loops(family: dict[str, Path], tmp_path: Path) -> None:
    from quantfid.bench.encode import encode_prompt
    from quantfid.bench.tasks import load_prompts

    ws = tmp_path / "ws"
    with pytest.raises(QuantfidError, match="no reference"):
        run_tasks(ws, str(family["q2"]), tasks="arith_mc", limit=5, progress=False)
    r_ref = run_tasks(ws, str(family["ref"]), reference=True, tasks="arith_mc", limit=5,
                      progress=False)
    r_q = run_tasks(ws, str(family["q2"]), tasks="arith_mc", limit=5, progress=False)
    assert not r_ref[0]["skipped"] and not r_q[0]["skipped"] and r_ref[0]["kld_mean"] is None
    w = Workspace(ws)
    outs = {(o.model, o.benchmark, o.prompt_id): o.passed for o in w.outcomes()}
    fid = {r.prompt_id: r for r in w.prompt_fidelity()}
    tok = _tok(family["ref"])
    mods = {"ref": _model(family["ref"]), "q2": _model(family["q2"])}
    prompts = load_prompts("arith_mc", limit=5)
    assert set(fid) == {p.id for p in prompts} and {r.model for r in fid.values()} == {"q2"}
    for p in prompts:
        e = encode_prompt(tok, p)
        for mid, mod in mods.items():
            ll = [(lambda lsm, c: lsm[np.arange(len(lsm) - len(c), len(lsm)), c].sum())(
                _full_lsm(mod, np.concatenate([e.context, c])), c) for c in e.continuations]
            lens = np.array([len(c) for c in p.choices], dtype=float)
            assert outs[(mid, "arith_mc", p.id)] == (int(np.argmax(ll)) == p.gold)
            assert outs[(mid, "arith_mc:acc_norm", p.id)] == (
                int(np.argmax(np.array(ll) / lens)) == p.gold)
        ids = e.gold_ids()  # per-token KL(P_ref || P_q) over ids[1:] with scipy
        lp, lq = _full_lsm(mods["ref"], ids), _full_lsm(mods["q2"], ids)
        kl = rel_entr(np.exp(lp), np.exp(lq)).sum(axis=1)
        row = fid[p.id]
        assert row.n_tokens == len(ids) - 1
        assert row.kld_mean == pytest.approx(kl.mean(), rel=2e-3, abs=1e-6)
        # per-token values from the compact store are estimates (sampled tail): the max of a
        # few tokens is looser than the mean (quantfid.store.compact's error bounds)
        assert row.kld_max == pytest.approx(kl.max(), rel=1e-2, abs=1e-6)
        t = ids[1:]
        assert row.nll_ref_mean == pytest.approx(-lp[np.arange(len(t)), t].mean(), abs=1e-5)
        assert row.nll_q_mean == pytest.approx(-lq[np.arange(len(t)), t].mean(), abs=1e-5)
        assert row.same_top1 == pytest.approx(np.mean(lp.argmax(1) == lq.argmax(1)))
    assert r_q[0]["kld_mean"] == pytest.approx(np.mean([r.kld_mean for r in fid.values()]))
    again = run_tasks(ws, str(family["q2"]), tasks="arith_mc", limit=5, progress=False)
    assert again[0]["skipped"] and again[0]["acc"] == r_q[0]["acc"]
    assert again[0]["kld_mean"] == r_q[0]["kld_mean"]
    with pytest.raises(MismatchError, match="already has reference"):
        run_tasks(ws, str(family["q1"]), reference=True, tasks="arith_mc", limit=5,
                  progress=False)


def test_identical_quant_has_zero_kld(family: dict[str, Path], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_tasks(ws, str(family["ref"]), reference=True, tasks="cloze", limit=4, progress=False)
    r = run_tasks(ws, str(family["ref"]), name="same", tasks="cloze", limit=4, progress=False)
    assert r[0]["kld_mean"] is not None and abs(r[0]["kld_mean"]) < 1e-5
    assert all(row.same_top1 == 1.0 for row in Workspace(ws).prompt_fidelity())


def test_prompts_jsonl_and_measure_prompts(family: dict[str, Path], tmp_path: Path) -> None:
    f = tmp_path / "my.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x1", "prompt": "The assert statement", "answer": " is a debugging aid"},
        {"id": "x2", "prompt": "A module is a file containing Python definitions"}]) + "\n")
    prompts = read_prompts_jsonl(f)
    assert isinstance(prompts[0], ChoicePrompt) and isinstance(prompts[1], TextPrompt)
    ws = Workspace(tmp_path / "ws")
    res = measure_prompts(ws, str(f), reference=parse_spec(str(family["ref"]), role="reference"),
                          quants=[parse_spec(str(family[q])) for q in ("q1", "q2")],
                          progress=False)
    assert [r["model"] for r in res] == ["ref", "q1", "q2"]
    rows = ws.prompt_fidelity()
    assert {(r.model, r.prompt_id) for r in rows} == {(q, x) for q in ("q1", "q2")
                                                      for x in ("x1", "x2")}
    n2 = len(_tok(family["ref"])(prompts[1].text, add_special_tokens=False)["input_ids"]) - 1
    assert {r.n_tokens for r in rows if r.prompt_id == "x2"} == {n2}
    assert ws.outcomes() == []  # prompts without real choices give no outcomes
    assert res[2]["kld_mean"] > res[1]["kld_mean"] > 0  # the larger perturbation drifts further


@pytest.mark.parametrize("line,msg", [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (b"\xff\xfe".decode("latin-1"), "not UTF-8"),
    ('{"prompt": "a"}', "'id'"),
    ('{"id": 1, "prompt": "a", "answer": ""}', "answer"),
])
def test_prompts_jsonl_errors(tmp_path: Path, line: str, msg: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_bytes((line + "\n").encode("latin-1"))  # one byte per character: \xff stays raw
    with pytest.raises(FormatError, match=msg):
        read_prompts_jsonl(f)


def test_measure_prompts_on_ingested_prompt_texts(family: dict[str, Path], tmp_path: Path) -> None:
    from quantfid.ingest.prompts import PromptText, to_table

    ws = Workspace(tmp_path / "ws")
    run_tasks(ws.path, str(family["ref"]), reference=True, tasks="cloze", limit=2, progress=False)
    run_tasks(ws.path, str(family["q1"]), tasks="cloze", limit=2, progress=False)
    texts = [PromptText("arc", "d1", "The assert", (" cab", " statement"), gold=1),
             PromptText("arc", "d2", "A module is", responses=(" a file",)),
             PromptText("arc", "d3", "Python definitions and statements")]
    ws.write_part("prompts", "ingest-lm-eval-ref-arc", to_table("ref", texts, "lm-eval"))
    res = measure_prompts(ws, "arc", progress=False)
    assert [r["model"] for r in res] == ["ref", "q1"]
    rows = {r.prompt_id: r for r in ws.prompt_fidelity() if r.benchmark == "arc"}
    assert set(rows) == {"d1", "d2", "d3"}
    tok = _tok(family["ref"])

    def n(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"]) - 1

    # gold continuation, the reference's own response, and no answer: all teacher-forced
    assert rows["d1"].n_tokens == n("The assert statement")
    assert rows["d2"].n_tokens == n("A module is a file")
    assert rows["d3"].n_tokens == n("Python definitions and statements")
    with pytest.raises(QuantfidError, match="nor an ingested benchmark"):
        measure_prompts(ws, "nope", progress=False)
