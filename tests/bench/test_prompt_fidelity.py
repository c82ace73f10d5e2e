"""Outcomes and per-prompt fidelity on tiny random models, checked against plain loops."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

from quantfid.backends.base import LoadedModel
from quantfid.bench.prompt_fidelity import (
    TextPrompt,
    evaluate,
    measure_prompts,
    read_prompts_jsonl,
)
from quantfid.bench.types import ChoicePrompt
from quantfid.errors import FormatError, QuantfidError
from quantfid.records import Model
from quantfid.store.workspace import Workspace

from .helpers import GreedyTokenizer, tiny_llama

LETTERS = "abcdefghij"



def _prompts(rng: np.random.Generator, n: int) -> list[ChoicePrompt]:
    out = []
    for i in range(n):
        ctx = "".join(rng.choice(list(LETTERS + " "), size=int(rng.integers(3, 14))))
        choices = tuple(" " + "".join(rng.choice(list(LETTERS), size=int(rng.integers(1, 5))))
                        for _ in range(int(rng.integers(2, 5))))
        out.append(ChoicePrompt(f"t{i}", ctx.strip() or "a", choices, int(rng.integers(len(choices)))))
    return out


def _lm(module: torch.nn.Module, mid: str, role: str, h: str) -> LoadedModel:
    return LoadedModel(module=module, tokenizer=GreedyTokenizer(),
                       info=Model(id=mid, role=role, hash=h))  # type: ignore[arg-type]


def _perturbed(module: torch.nn.Module, rng: np.random.Generator, scale: float) -> torch.nn.Module:
    q = copy.deepcopy(module)
    with torch.no_grad():
        for p in q.parameters():
            p.add_(torch.from_numpy(rng.normal(0, scale, size=tuple(p.shape)).astype(np.float32)))
    return q


def _full_lsm(module: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = module(input_ids=torch.from_numpy(ids[None, :-1])).logits[0].double().numpy()
    return log_softmax(logits, axis=-1)


def _ids(tok: GreedyTokenizer, p: ChoicePrompt) -> np.ndarray:
    from quantfid.bench.encode import encode_prompt

    return encode_prompt(tok, p).gold_ids()


def test_outcomes_and_fidelity_match_plain_loops(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    ref_m = tiny_llama(rng)
    q_m = _perturbed(ref_m, rng, 0.05)
    prompts = _prompts(rng, 9)
    ws = Workspace(tmp_path / "ws")
    ref, quant = _lm(ref_m, "ref", "reference", "h-ref"), _lm(q_m, "q", "quant", "h-q")

    with pytest.raises(QuantfidError, match="reference"):
        evaluate(ws, quant, "toy", prompts, progress=False)
    r_ref = evaluate(ws, ref, "toy", prompts, batch_size=3, progress=False)
    r_q = evaluate(ws, quant, "toy", prompts, batch_size=2, progress=False)
    assert not r_ref.skipped and not r_q.skipped and r_ref.kld_mean is None

    tok = GreedyTokenizer()
    outs = {(o.model, o.benchmark, o.prompt_id): o.passed for o in ws.outcomes()}
    fid = {r.prompt_id: r for r in ws.prompt_fidelity()}
    assert set(fid) == {p.id for p in prompts} and all(r.model == "q" for r in fid.values())
    for p in prompts:
        ids = _ids(tok, p)
        # acc / acc_norm from a naive per-choice loop
        from quantfid.bench.encode import encode_prompt
        e = encode_prompt(tok, p)
        for mid, mod in (("ref", ref_m), ("q", q_m)):
            ll = []
            for cont in e.continuations:
                lsm = _full_lsm(mod, np.concatenate([e.context, cont]))
                ll.append(lsm[np.arange(len(lsm) - len(cont), len(lsm)), cont].sum())
            lens = np.array([len(c) for c in p.choices], dtype=float)
            assert outs[(mid, "toy", p.id)] == (int(np.argmax(ll)) == p.gold)
            assert outs[(mid, "toy:acc_norm", p.id)] == (int(np.argmax(np.array(ll) / lens)) == p.gold)
        # per-token KL(P_ref || P_q) over ids[1:] with scipy
        lp, lq = _full_lsm(ref_m, ids), _full_lsm(q_m, ids)
        kl = rel_entr(np.exp(lp), np.exp(lq)).sum(axis=1)
        row = fid[p.id]
        assert row.n_tokens == len(ids) - 1
        assert row.kld_mean == pytest.approx(kl.mean(), rel=1e-3, abs=1e-6)
        assert row.kld_max == pytest.approx(kl.max(), rel=1e-3, abs=1e-6)
        assert row.kld_sum == pytest.approx(kl.sum(), rel=1e-3, abs=1e-6)
        t = ids[1:]
        assert row.nll_ref_mean == pytest.approx(-lp[np.arange(len(t)), t].mean(), abs=1e-5)
        assert row.nll_q_mean == pytest.approx(-lq[np.arange(len(t)), t].mean(), abs=1e-5)
        assert row.same_top1 == pytest.approx(np.mean(lp.argmax(1) == lq.argmax(1)))
    assert r_q.kld_mean == pytest.approx(np.mean([r.kld_mean for r in fid.values()]))

    # re-runs skip finished units and report the stored numbers
    again = evaluate(ws, quant, "toy", prompts, progress=False)
    assert again.skipped and again.acc == r_q.acc and again.kld_mean == r_q.kld_mean


def test_identical_quant_has_zero_kld(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    m = tiny_llama(rng)
    ws = Workspace(tmp_path)
    prompts = _prompts(rng, 4)
    evaluate(ws, _lm(m, "ref", "reference", "a"), "toy", prompts, progress=False)
    r = evaluate(ws, _lm(copy.deepcopy(m), "same", "quant", "b"), "toy", prompts, progress=False)
    assert r.kld_mean is not None and abs(r.kld_mean) < 1e-5
    assert all(row.same_top1 == 1.0 for row in ws.prompt_fidelity())


def test_prompts_jsonl_and_measure_prompts(tmp_path: Path) -> None:
    f = tmp_path / "my.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"id": "x1", "prompt": "abc abc ab", "answer": " cab"},
        {"id": "x2", "prompt": "ij ij. hg fe"}]) + "\n")
    prompts = read_prompts_jsonl(f)
    assert isinstance(prompts[0], ChoicePrompt) and isinstance(prompts[1], TextPrompt)
    rng = np.random.default_rng(9)
    ref_m = tiny_llama(rng)
    models = {"ref": _lm(ref_m, "ref", "reference", "r"),
              "q1": _lm(_perturbed(ref_m, rng, 0.1), "q1", "quant", "q1"),
              "q2": _lm(_perturbed(ref_m, rng, 0.3), "q2", "quant", "q2")}
    ws = Workspace(tmp_path / "ws")
    for lm in models.values():
        ws.add_model(lm.info)
    res = measure_prompts(ws, str(f), load=lambda m: models[m.id], progress=False)
    assert [r.model for r in res] == ["ref", "q1", "q2"]
    rows = ws.prompt_fidelity()
    assert {(r.model, r.prompt_id) for r in rows} == {(q, x) for q in ("q1", "q2")
                                                      for x in ("x1", "x2")}
    tok = GreedyTokenizer()
    n2 = len(tok("ij ij. hg fe")["input_ids"]) - 1
    assert {r.n_tokens for r in rows if r.prompt_id == "x2"} == {n2}
    assert ws.outcomes() == []  # prompts without real choices give no outcomes
    assert res[2].kld_mean is not None and res[1].kld_mean is not None
    assert res[2].kld_mean > res[1].kld_mean  # the larger perturbation drifts further


@pytest.mark.parametrize("line,msg", [
    ("{not json", "not valid JSON"),
    ('{"prompt": "a"}', "'id'"),
    ('{"id": 1, "prompt": "a", "answer": ""}', "answer"),
])
def test_prompts_jsonl_errors(tmp_path: Path, line: str, msg: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(line + "\n")
    with pytest.raises(FormatError, match=msg):
        read_prompts_jsonl(f)


def test_measure_prompts_on_ingested_prompt_texts(tmp_path: Path) -> None:
    from quantfid.ingest.prompts import PromptText, to_table

    rng = np.random.default_rng(11)
    ref_m = tiny_llama(rng)
    models = {"ref": _lm(ref_m, "ref", "reference", "r"),
              "q1": _lm(_perturbed(ref_m, rng, 0.2), "q1", "quant", "q1")}
    ws = Workspace(tmp_path / "ws")
    for lm in models.values():
        ws.add_model(lm.info)
    texts = [PromptText("arc", "d1", "abc ab", (" cab", " ij"), gold=1),
             PromptText("arc", "d2", "hg fe", responses=(" dcb",)),
             PromptText("arc", "d3", "ij ij. ab")]
    ws.write_part("prompts", "ingest-lm-eval-ref-arc", to_table("ref", texts, "lm-eval"))
    res = measure_prompts(ws, "arc", load=lambda m: models[m.id], progress=False)
    assert [r.model for r in res] == ["ref", "q1"]
    rows = {r.prompt_id: r for r in ws.prompt_fidelity()}
    assert set(rows) == {"d1", "d2", "d3"}
    tok = GreedyTokenizer()
    # gold continuation, the reference's own response, and no answer: all teacher-forced
    assert rows["d1"].n_tokens == len(tok("abc ab ij")["input_ids"]) - 1
    assert rows["d2"].n_tokens == len(tok("hg fe dcb")["input_ids"]) - 1
    assert rows["d3"].n_tokens == len(tok("ij ij. ab")["input_ids"]) - 1
    with pytest.raises(QuantfidError, match="nor an ingested benchmark"):
        measure_prompts(ws, "nope", load=lambda m: models[m.id], progress=False)
