"""Log-likelihood scoring of choice prompts, with the prompt prefix computed once.

Per prompt: one forward over the context with ``use_cache=True``; its last position
gives the log-prob of every choice's first token; then all choices of all prompts in the
batch run as one batch continuing from the cached keys/values (the cache rows are
repeated per choice), giving the remaining continuation tokens' log-probs. Prompts are
batched with left padding (attention mask + explicit position ids), so each row's
positions and attended tokens are exactly those of an unpadded run.

Numerics: log-softmax in float32 (logits cast up from bf16/fp16 models); a choice's
log-likelihood is the float64 sum of its tokens' float32 log-probs, as lm-eval does.
``score_naive`` is the plain reference loop (one full forward per choice) used by the
tests and ``benchmarks/bench_prompts.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quantfid.bench.encode import EncodedPrompt


@dataclass(frozen=True)
class ChoiceResult:
    """Scores of one prompt's choices.

    loglik: (n_choices,) float64 summed log-prob of each continuation given the context.
    is_greedy: (n_choices,) bool, every continuation token is the argmax (lm-eval's is_greedy).
    gold_logprobs: None, or (T, V) float32 log-softmax at the T = P + L_gold - 1 positions that
        predict ``gold_ids[1:]`` (the context after its first token, then the gold answer).
    """

    id: str
    loglik: np.ndarray
    is_greedy: np.ndarray
    gold_logprobs: torch.Tensor | None = None


def _out_cache(out: object) -> Any:
    """The key/value cache of a model output (``cache`` in transformers 5, else the old name)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _gather(lsm: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return lsm.gather(-1, targets[:, None])[:, 0]


@torch.inference_mode()
def _score_batch(module: torch.nn.Module, batch: Sequence[EncodedPrompt], device: torch.device,
                 want_gold: bool) -> list[ChoiceResult]:
    n_b = len(batch)
    plen = [len(p.context) for p in batch]
    p_max = max(plen)
    ids = torch.zeros(n_b, p_max, dtype=torch.long)
    mask = torch.zeros(n_b, p_max, dtype=torch.long)
    for b, p in enumerate(batch):
        ids[b, p_max - plen[b]:] = torch.from_numpy(p.context)
        mask[b, p_max - plen[b]:] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = module(input_ids=ids.to(device), attention_mask=mask.to(device),
                 position_ids=pos.to(device), use_cache=True)
    logits = out.logits
    last_lsm = torch.log_softmax(logits[:, -1, :].float(), dim=-1)

    rows = [(b, c) for b, p in enumerate(batch) for c in range(len(p.continuations))]
    conts = [torch.from_numpy(batch[b].continuations[c]) for b, c in rows]
    l_max = max(len(c) for c in conts) - 1
    logits2: torch.Tensor | None = None
    if l_max > 0:
        idx = torch.tensor([b for b, _ in rows], dtype=torch.long)
        cache = _out_cache(out)
        cache.reorder_cache(idx.to(device))
        cids = torch.zeros(len(rows), l_max, dtype=torch.long)
        cmask = torch.zeros(len(rows), l_max, dtype=torch.long)
        for r, ct in enumerate(conts):
            cids[r, :len(ct) - 1] = ct[:-1]
            cmask[r, :len(ct) - 1] = 1
        amask = torch.cat([mask[idx], cmask], dim=1)
        cpos = torch.tensor(plen, dtype=torch.long)[idx][:, None] + torch.arange(l_max)[None, :]
        out2 = module(input_ids=cids.to(device), attention_mask=amask.to(device),
                      position_ids=cpos.to(device), cache=cache, use_cache=False)
        logits2 = out2.logits

    results: list[ChoiceResult] = []
    r = 0
    for b, p in enumerate(batch):
        n_c = len(p.continuations)
        ll = np.zeros(n_c, dtype=np.float64)
        greedy = np.zeros(n_c, dtype=bool)
        gold_lp: torch.Tensor | None = None
        for c in range(n_c):
            cont = conts[r].to(device)
            first = last_lsm[b]
            lps = [first[cont[0]].reshape(1)]
            hits = [bool(first.argmax() == cont[0])]
            lsm_rest: torch.Tensor | None = None
            if len(cont) > 1:
                assert logits2 is not None
                lsm_rest = torch.log_softmax(logits2[r, :len(cont) - 1].float(), dim=-1)
                lps.append(_gather(lsm_rest, cont[1:]))
                hits.append(bool((lsm_rest.argmax(-1) == cont[1:]).all()))
            ll[c] = float(torch.cat(lps).double().sum())
            greedy[c] = all(hits)
            if want_gold and c == p.gold:
                pre = torch.log_softmax(logits[b, p_max - plen[b]:].float(), dim=-1)
                parts = [pre] if lsm_rest is None else [pre, lsm_rest]
                gold_lp = torch.cat(parts, dim=0).cpu()
            r += 1
        results.append(ChoiceResult(id=p.id, loglik=ll, is_greedy=greedy, gold_logprobs=gold_lp))
    return results


def iter_scores(module: torch.nn.Module, prompts: Sequence[EncodedPrompt],
                device: torch.device | str = "cpu", batch_size: int = 4,
                want_gold_logprobs: bool = False,
                order: Sequence[int] | None = None) -> Iterator[tuple[int, ChoiceResult]]:
    """Yield ``(index, result)`` batch by batch, in processing order.

    ``order`` (a permutation of the prompt indices) sets that order; by default prompts are
    sorted by context length (less padding). Consecutive prompts of ``order`` are batched
    ``batch_size`` at a time. Streaming keeps at most one batch of gold log-probs alive.
    """
    dev = torch.device(device)
    idx = list(order) if order is not None else sorted(range(len(prompts)),
                                                         key=lambda i: len(prompts[i].context))
    if sorted(idx) != list(range(len(prompts))):
        raise ValueError("order must be a permutation of the prompt indices")
    step = max(1, batch_size)
    for start in range(0, len(idx), step):
        chunk = idx[start:start + step]
        res = _score_batch(module, [prompts[i] for i in chunk], dev, want_gold_logprobs)
        yield from zip(chunk, res, strict=True)


def score_prompts(module: torch.nn.Module, prompts: Sequence[EncodedPrompt],
                  device: torch.device | str = "cpu", batch_size: int = 4,
                  want_gold_logprobs: bool = False) -> list[ChoiceResult]:
    """Score every prompt's choices with prefix sharing; results in input order."""
    out: list[ChoiceResult | None] = [None] * len(prompts)
    for i, res in iter_scores(module, prompts, device, batch_size, want_gold_logprobs):
        out[i] = res
    return [r for r in out if r is not None]


@torch.inference_mode()
def score_naive(module: torch.nn.Module, prompts: Sequence[EncodedPrompt],
                device: torch.device | str = "cpu",
                want_gold_logprobs: bool = False) -> list[ChoiceResult]:
    """The plain loop: one full forward over context + choice for every choice."""
    dev = torch.device(device)
    results = []
    for p in prompts:
        ll = np.zeros(len(p.continuations), dtype=np.float64)
        greedy = np.zeros(len(p.continuations), dtype=bool)
        gold_lp = None
        for c, cont in enumerate(p.continuations):
            full = torch.from_numpy(np.concatenate([p.context, cont]))
            logits = module(input_ids=full[None, :-1].to(dev)).logits[0]
            lsm = torch.log_softmax(logits.float(), dim=-1)
            tail = lsm[-len(cont):]
            target = torch.from_numpy(cont).to(dev)
            ll[c] = float(_gather(tail, target).double().sum())
            greedy[c] = bool((tail.argmax(-1) == target).all())
            if want_gold_logprobs and c == p.gold:
                gold_lp = lsm.cpu()
        results.append(ChoiceResult(id=p.id, loglik=ll, is_greedy=greedy, gold_logprobs=gold_lp))
    return results
