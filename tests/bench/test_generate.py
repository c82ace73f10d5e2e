"""Greedy generation: equals an uncached argmax loop, honours stop sequences and EOS."""

from __future__ import annotations

import numpy as np
import torch

from quantfid.backends.base import LoadedModel
from quantfid.bench.generate import greedy_generate
from quantfid.records import Model

from .helpers import GreedyTokenizer, tiny_llama


class _DecodingTok(GreedyTokenizer):
    def __init__(self) -> None:
        super().__init__()
        self.inv = {i: p for p, i in self.vocab.items()}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(self.inv.get(i, "") for i in ids)


def _plain_greedy(module: torch.nn.Module, ids: list[int], n: int) -> list[int]:
    out = list(ids)
    with torch.no_grad():
        for _ in range(n):
            out.append(int(module(input_ids=torch.tensor([out])).logits[0, -1].argmax()))
    return out[len(ids):]


def test_greedy_matches_uncached_loop_and_stops() -> None:
    tok = _DecodingTok()
    module = tiny_llama(np.random.default_rng(2), vocab=len(tok.vocab))
    lm = LoadedModel(module=module, tokenizer=tok, info=Model(id="m"))
    prompt = "abc de"
    gen = greedy_generate(lm, prompt, max_new_tokens=12)
    want = _plain_greedy(module, tok(prompt)["input_ids"], 12)
    assert list(gen.token_ids) == want and gen.stop is None
    assert gen.text == tok.decode(want)
    # a stop sequence taken from the text itself cuts the text before it
    stop = gen.text[3:5]
    cut = greedy_generate(lm, prompt, max_new_tokens=12, stop=[stop])
    assert cut.stop == stop and cut.text == gen.text[:gen.text.find(stop)]
    # EOS ends generation without being part of the text
    tok.eos_token_id = want[2]
    eos = greedy_generate(lm, prompt, max_new_tokens=12)
    assert eos.stop == "eos" and list(eos.token_ids) == want[:want.index(want[2])]


def test_generation_task_fidelity_uses_the_reference_completion(tmp_path, monkeypatch) -> None:
    import copy

    from quantfid.bench.tasks import humaneval_mc
    from quantfid.commands.bench import _generation
    from quantfid.ingest.prompts import read_prompts
    from quantfid.store.workspace import Workspace

    problems = [{"task_id": f"T/{i}", "prompt": p, "entry_point": "f",
                 "test": "def check(candidate):\n    assert False\n"}
                for i, p in enumerate(["abc de", "ij hg fe"])]
    monkeypatch.setattr(humaneval_mc, "load_problems", lambda: problems)
    tok = _DecodingTok()
    module = tiny_llama(np.random.default_rng(5), vocab=len(tok.vocab))
    ref = LoadedModel(module=module, tokenizer=tok, info=Model(id="ref", role="reference", hash="r"))
    twin = LoadedModel(module=copy.deepcopy(module), tokenizer=tok, info=Model(id="q", hash="q"))
    ws = Workspace(tmp_path / "ws")
    ws.add_model(ref.info)
    r = _generation(ws, ref, None, 5.0)
    q = _generation(ws, twin, None, 5.0)
    assert r["n"] == q["n"] == 2 and r["acc"] == q["acc"] == 0.0
    completions = {p.prompt_id: p.responses[0] for p in read_prompts(ws, model="ref")}
    rows = {p.prompt_id: p for p in ws.prompt_fidelity()}
    assert set(rows) == {"T/0", "T/1"} and {p.model for p in rows.values()} == {"q"}
    for prob in problems:
        n = len(tok(prob["prompt"] + completions[prob["task_id"]])["input_ids"]) - 1
        assert rows[prob["task_id"]].n_tokens == n
    assert q["kld_mean"] is not None and q["kld_mean"] < 1e-6  # an identical twin
