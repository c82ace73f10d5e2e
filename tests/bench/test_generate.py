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
