"""The transformers backend's log-likelihood (prefix shared) and generation capabilities,
against plain loops: one full forward per choice, an uncached argmax loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.bench.helpers import GreedyTokenizer, tiny_llama

from quantfid.backends.base import LoadedModel, LoglikRequest
from quantfid.backends.hf import HFBackend
from quantfid.records import Model
from quantfid.reducers import FullRows


def _requests(rng: np.random.Generator, n: int, vocab: int = 48) -> list[LoglikRequest]:
    out = []
    for i in range(n):
        ctx = rng.integers(0, vocab, size=int(rng.integers(1, 12)))
        conts = tuple(rng.integers(0, vocab, size=int(rng.integers(1, 6)))
                      for _ in range(int(rng.integers(1, 5))))
        out.append(LoglikRequest(f"p{i}", ctx, conts, int(rng.integers(len(conts)))))
    return out


def _lsm(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    """Independent check: numpy float64 log-softmax of one full forward over ``ids[:-1]``."""
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(ids[None, :-1])).logits[0].double().numpy()
    x = logits - logits.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.fixture
def backend() -> HFBackend:
    module = tiny_llama(np.random.default_rng(7))
    return HFBackend(LoadedModel(module, GreedyTokenizer(), Model(id="m")), chunk=4)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_loglik_equals_one_forward_per_choice(backend: HFBackend, batch_size: int) -> None:
    reqs = _requests(np.random.default_rng(1), 11)
    got = dict(backend.loglikelihood(reqs, FullRows(), batch_size=batch_size))
    assert sorted(got) == list(range(len(reqs)))
    for i, r in enumerate(reqs):
        res = got[i]
        for c, cont in enumerate(r.continuations):
            lsm = _lsm(backend.module, np.concatenate([r.context, cont]))
            pos = np.arange(len(r.context) - 1, len(r.context) + len(cont) - 1)
            assert res.loglik[c] == pytest.approx(float(lsm[pos, cont].sum()), abs=1e-4)
            assert res.is_greedy[c] == bool((lsm[pos].argmax(-1) == cont).all())
        # the reducer saw the gold sequence's positions 0 .. L-2, in order, chunk by chunk
        gold = _lsm(backend.module, r.gold_ids())
        seen = torch.cat(res.reduced).double().numpy()
        assert seen.shape == gold.shape and max(x.shape[0] for x in res.reduced) <= 4
        np.testing.assert_allclose(seen, gold, atol=1e-4)


def test_loglik_without_reducer(backend: HFBackend) -> None:
    reqs = _requests(np.random.default_rng(3), 5)
    with_r = dict(backend.loglikelihood(reqs, FullRows()))
    without = dict(backend.loglikelihood(reqs))
    for i in range(len(reqs)):
        np.testing.assert_array_equal(with_r[i].loglik, without[i].loglik)
        assert without[i].reduced == []


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


def test_generate_matches_uncached_loop_and_stops() -> None:
    from quantfid.backends.hf_generate import greedy

    tok = _DecodingTok()
    module = tiny_llama(np.random.default_rng(2), vocab=len(tok.vocab))
    b = HFBackend(LoadedModel(module, tok, Model(id="m")))
    prompt = "abc de"
    gen = greedy(module, tok, b.device, prompt, max_tokens=12)
    want = _plain_greedy(module, tok(prompt)["input_ids"], 12)
    assert list(gen.token_ids) == want and gen.stop is None
    assert gen.text == tok.decode(want)
    assert dict(b.generate([prompt, prompt], max_tokens=12, stop=[])) == {0: gen.text, 1: gen.text}
    stop = gen.text[3:5]  # a stop sequence from the text itself cuts the text before it
    assert dict(b.generate([prompt], max_tokens=12, stop=[stop]))[0] == gen.text[:gen.text.find(stop)]
    tok.eos_token_id = want[2]  # EOS ends generation without being part of the text
    eos = greedy(module, tok, b.device, prompt, max_tokens=12)
    assert eos.stop == "eos" and list(eos.token_ids) == want[:want.index(want[2])]
