"""Prefix-shared batched scoring against the naive one-forward-per-choice loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantfid.bench.encode import EncodedPrompt
from quantfid.bench.score import iter_scores, score_naive, score_prompts


def _random_prompts(rng: np.random.Generator, n: int, vocab: int = 48) -> list[EncodedPrompt]:
    out = []
    for i in range(n):
        ctx = rng.integers(0, vocab, size=int(rng.integers(1, 12)))
        conts = tuple(rng.integers(0, vocab, size=int(rng.integers(1, 6)))
                      for _ in range(int(rng.integers(1, 5))))
        out.append(EncodedPrompt(id=f"p{i}", context=ctx, continuations=conts,
                                 gold=int(rng.integers(len(conts)))))
    return out


def _manual_loglik(model: torch.nn.Module, ctx: np.ndarray, cont: np.ndarray) -> float:
    """Independent check: a plain numpy log-softmax over a full forward."""
    full = np.concatenate([ctx, cont])
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(full[None, :-1])).logits[0].double().numpy()
    lsm = logits - logits.max(-1, keepdims=True)
    lsm = lsm - np.log(np.exp(lsm).sum(-1, keepdims=True))
    pos = np.arange(len(ctx) - 1, len(full) - 1)
    return float(lsm[pos, cont].sum())


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_shared_equals_naive(model: torch.nn.Module, batch_size: int) -> None:
    prompts = _random_prompts(np.random.default_rng(1), 11)
    shared = score_prompts(model, prompts, batch_size=batch_size, want_gold_logprobs=True)
    naive = score_naive(model, prompts, want_gold_logprobs=True)
    for p, a, b in zip(prompts, shared, naive, strict=True):
        assert a.id == b.id == p.id
        np.testing.assert_allclose(a.loglik, b.loglik, atol=1e-4, rtol=0)
        np.testing.assert_array_equal(a.is_greedy, b.is_greedy)
        assert a.gold_logprobs is not None and b.gold_logprobs is not None
        n_scored = len(p.context) + len(p.continuations[p.gold]) - 1
        assert a.gold_logprobs.shape == (n_scored, 48)
        torch.testing.assert_close(a.gold_logprobs, b.gold_logprobs, atol=1e-4, rtol=0)
        for c, cont in enumerate(p.continuations):
            assert a.loglik[c] == pytest.approx(_manual_loglik(model, p.context, cont), abs=1e-4)


def test_gold_logprobs_score_gold_tokens(model: torch.nn.Module) -> None:
    """The gold log-probs, gathered at gold_ids[1:], sum over the answer to the gold loglik."""
    p = _random_prompts(np.random.default_rng(3), 5)
    for prompt, res in zip(p, score_prompts(model, p, batch_size=2, want_gold_logprobs=True),
                           strict=True):
        assert res.gold_logprobs is not None
        ids = prompt.gold_ids()
        lp = res.gold_logprobs.double().numpy()[np.arange(len(ids) - 1), ids[1:]]
        n = len(prompt.continuations[prompt.gold])
        assert lp[-n:].sum() == pytest.approx(res.loglik[prompt.gold], abs=1e-4)


def test_iter_scores_order_and_validation(model: torch.nn.Module) -> None:
    prompts = _random_prompts(np.random.default_rng(4), 6)
    order = [5, 0, 3, 1, 4, 2]
    got = [i for i, _ in iter_scores(model, prompts, batch_size=4, order=order)]
    assert got == order
    with pytest.raises(ValueError):
        list(iter_scores(model, prompts, order=[0, 1]))
