"""Log-likelihood of continuations on a torch causal LM, the prompt prefix computed once.

Per batch of prompts: one pass of the body over the contexts (left-padded, attention mask and
explicit position ids, so each row's positions and attended tokens are those of an unpadded
run) with a key/value cache; the head at each context's last position gives the log-prob of
every choice's first token; then all choices of the batch continue from the cache (its rows
repeated per choice) in one more pass, giving the remaining continuation tokens' log-probs.

Numerics: log-softmax in float32 (logits cast up from bf16/fp16 models); a choice's
log-likelihood is the float64 sum of its tokens' float32 log-probs, as lm-eval does.
With a reducer, the gold sequence's logits (context positions 0 .. P-1, then the gold
continuation's positions) are handed to it in chunks, as computed: per-prompt fidelity costs
no second forward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from quantfid.backends.base import LoglikRequest, LoglikResult, Reducer
from quantfid.backends.hf_head import ChunkedHead


def _out_cache(out: object) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _forward(head: ChunkedHead, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor,
             cache: Any = None) -> tuple[torch.Tensor, Any, bool]:
    """(hidden states or logits, cache, is_hidden) of one pass with a cache."""
    kw: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "position_ids": pos,
                          "use_cache": cache is None}
    if cache is not None:
        kw["cache"] = cache
    if head.chunked:
        out = head.body(**kw)
        return out.last_hidden_state, _out_cache(out), True
    out = head.module(**kw)
    return out.logits, _out_cache(out), False


def _reduce_rows(head: ChunkedHead, reducer: Reducer[Any], window: int, pos0: int,
                 states: torch.Tensor, is_hidden: bool) -> list[Any]:
    """Hand (n, H) hidden states (or (n, V) logits) to the reducer in chunks of positions."""
    out = []
    for lo in range(0, states.shape[0], head.chunk):
        part = states[lo:lo + head.chunk]
        out.append(reducer.full(window, pos0 + lo, head.head(part) if is_hidden else part))
    return out


@torch.inference_mode()
def _score_batch(head: ChunkedHead, batch: Sequence[LoglikRequest], index: Sequence[int],
                 reducer: Reducer[Any] | None) -> list[LoglikResult[Any]]:
    dev = head.device
    states, cont_states, conts, _rows, is_hidden = body_passes(head, batch)
    plen = [len(p.context) for p in batch]
    p_max = states.shape[1]
    last = states[:, -1, :]  # (b, H) or (b, V)
    last_lsm = torch.log_softmax((head.head(last) if is_hidden else last).float(), dim=-1)

    results: list[LoglikResult[Any]] = []
    r = 0
    for b, p in enumerate(batch):
        n_c = len(p.continuations)
        ll = np.zeros(n_c, dtype=np.float64)
        greedy = np.zeros(n_c, dtype=bool)
        reduced: list[Any] = []
        for c in range(n_c):
            rest = None if cont_states is None else cont_states[r, :len(conts[r]) - 1]
            ll[c], greedy[c] = _choice(head, last_lsm[b], conts[r].to(dev), rest, is_hidden)
            if reducer is not None and c == p.gold:
                w = index[b]
                reduced += _reduce_rows(head, reducer, w, 0, states[b, p_max - plen[b]:], is_hidden)
                if rest is not None and rest.shape[0]:
                    reduced += _reduce_rows(head, reducer, w, plen[b], rest, is_hidden)
            r += 1
        results.append(LoglikResult(loglik=ll, is_greedy=greedy, reduced=reduced))
    return results


def body_passes(head: ChunkedHead, batch: Sequence[LoglikRequest]) -> tuple[
        torch.Tensor, torch.Tensor | None, list[torch.Tensor], list[tuple[int, int]], bool]:
    """The body over the batch's contexts (left-padded, with a cache), then over every
    choice's tokens from that cache: (context states (b, P, H), choice states (R, L, H) or
    None when every choice is one token, each choice's ids, (prompt, choice) per row R,
    whether the states are hidden states (else logits))."""
    dev = head.device
    n_b = len(batch)
    plen = [len(p.context) for p in batch]
    p_max = max(plen)
    ids = torch.zeros(n_b, p_max, dtype=torch.long)
    mask = torch.zeros(n_b, p_max, dtype=torch.long)
    for b, p in enumerate(batch):
        ids[b, p_max - plen[b]:] = torch.from_numpy(p.context)
        mask[b, p_max - plen[b]:] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    states, cache, is_hidden = _forward(head, ids.to(dev), mask.to(dev), pos.to(dev))

    rows = [(b, c) for b, p in enumerate(batch) for c in range(len(p.continuations))]
    conts = [torch.from_numpy(batch[b].continuations[c]) for b, c in rows]
    l_max = max(len(c) for c in conts) - 1
    cont_states: torch.Tensor | None = None
    if l_max > 0:
        sel = torch.tensor([b for b, _ in rows], dtype=torch.long)
        cache.reorder_cache(sel.to(dev))
        cids = torch.zeros(len(rows), l_max, dtype=torch.long)
        cmask = torch.zeros(len(rows), l_max, dtype=torch.long)
        for r, ct in enumerate(conts):
            cids[r, :len(ct) - 1] = ct[:-1]
            cmask[r, :len(ct) - 1] = 1
        amask = torch.cat([mask[sel], cmask], dim=1)
        cpos = torch.tensor(plen, dtype=torch.long)[sel][:, None] + torch.arange(l_max)[None, :]
        cont_states, _, _ = _forward(head, cids.to(dev), amask.to(dev), cpos.to(dev), cache)
    return states, cont_states, conts, rows, is_hidden


def _choice(head: ChunkedHead, first: torch.Tensor, cont: torch.Tensor,
            rest: torch.Tensor | None, is_hidden: bool) -> tuple[float, bool]:
    """One continuation's summed log-prob (float64 sum of float32 log-probs) and whether
    every token is the argmax. first: (V,) log-softmax at the context's last position; rest:
    (L - 1, H) hidden states (or (L - 1, V) logits) of the continuation's own positions."""
    lps = [first[cont[0]].reshape(1)]
    hits = [bool(first.argmax() == cont[0])]
    if len(cont) > 1:
        assert rest is not None
        lsm = torch.log_softmax((head.head(rest) if is_hidden else rest).float(), dim=-1)
        lps.append(lsm.gather(-1, cont[1:, None])[:, 0])
        hits.append(bool((lsm.argmax(-1) == cont[1:]).all()))
    return float(torch.cat(lps).double().sum()), all(hits)


def iter_loglik(head: ChunkedHead, requests: Sequence[LoglikRequest],
                reducer: Reducer[Any] | None = None, batch_size: int = 8
                ) -> Iterator[tuple[int, LoglikResult[Any]]]:
    """Yield ``(request index, result)`` batch by batch. Prompts are processed in order of
    (gold sequence length, context length) so batches pad little; at most one batch's
    logits are alive at a time."""
    def key(i: int) -> tuple[int, int]:
        q = requests[i]
        gold = len(q.context) + (len(q.continuations[q.gold]) if q.gold is not None else 0)
        return gold, len(q.context)

    order = sorted(range(len(requests)), key=key)
    step = max(1, batch_size)
    for lo in range(0, len(order), step):
        chunk = order[lo:lo + step]
        res = _score_batch(head, [requests[i] for i in chunk], chunk, reducer)
        yield from zip(chunk, res, strict=True)
