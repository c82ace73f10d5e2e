"""Log-likelihood of continuations on a torch causal LM, the prompt prefix computed once.

Per batch of prompts: one pass of the body over the contexts (left-padded, attention mask and
explicit position ids, so each row's positions and attended tokens are those of an unpadded
run) with a key/value cache; then all choices of the batch continue from the cache (its rows
repeated per choice) in one more pass. The LM head then runs once over every row of the batch
that needs it (each context's last position, giving every choice's first token; the choices'
own positions; the gold sequences' positions for the reducer), ``chunk`` rows at a time: its
weight (V x H, 113 MB for SmolLM2) streams once per chunk instead of once per prompt and
choice.

Numerics: log-softmax in float32 (logits cast up from bf16/fp16 models); a choice's
log-likelihood is the float64 sum of its tokens' float32 log-probs, as lm-eval does.
With a reducer, the gold sequence's logits (context positions 0 .. P-1, then the gold
continuation's positions) are handed to it in chunks, as computed: per-prompt fidelity costs
no second forward.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


@torch.inference_mode()
def _score_batch(head: ChunkedHead, batch: Sequence[LoglikRequest], index: Sequence[int],
                 reducer: Reducer[Any] | None) -> list[LoglikResult[Any]]:
    states, cont_states, conts, rows, is_hidden = body_passes(head, batch)
    segs = _segments(batch, states, cont_states, conts, rows, reducer is not None)
    return _results(batch, conts, _head_pass(head, segs, is_hidden, reducer, index))


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


@dataclass
class _Seg:
    """Rows of one prompt's states that need the head. cont = -1: context rows (the last
    one gives every choice's first token; all of them feed the reducer when ``reduce``);
    cont = c: choice c's own positions, predicting ``targets``. pos0: the first row's
    position in the prompt's sequence."""

    prompt: int
    cont: int
    rows: torch.Tensor  # (n, H) hidden states or (n, V) logits
    pos0: int
    reduce: bool
    targets: torch.Tensor | None = None  # (n,) int64


def _segments(batch: Sequence[LoglikRequest], states: torch.Tensor,
              cont_states: torch.Tensor | None, conts: list[torch.Tensor],
              rows: list[tuple[int, int]], with_reducer: bool) -> list[_Seg]:
    """Per prompt in order (so the reducer sees each prompt's positions in order, prompt
    after prompt, as a per-prompt loop would): its context rows, then its choices' rows."""
    p_max = states.shape[1]
    segs = []
    for b, p in enumerate(batch):
        n = len(p.context)
        gold = with_reducer and p.gold is not None
        ctx = states[b, p_max - n:] if gold else states[b, p_max - 1:]  # (n or 1, H)
        segs.append(_Seg(b, -1, ctx, n - ctx.shape[0], gold))
        for r in (r for r, (rb, _) in enumerate(rows) if rb == b):
            c, ct = rows[r][1], conts[r]
            if cont_states is not None and len(ct) > 1:
                segs.append(_Seg(b, c, cont_states[r, :len(ct) - 1], n,
                                 with_reducer and p.gold == c, ct[1:]))
    return segs


def _chunks(segs: list[_Seg], size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Pieces ``(segment, r0, r1)`` packed in order into chunks of at most ``size`` rows."""
    cur: list[tuple[int, int, int]] = []
    room = size
    for i, s in enumerate(segs):
        r0, n = 0, s.rows.shape[0]
        while r0 < n:
            take = min(room, n - r0)
            cur.append((i, r0, r0 + take))
            r0 += take
            room -= take
            if room == 0:
                yield cur
                cur, room = [], size
    if cur:
        yield cur


def _head_pass(head: ChunkedHead, segs: list[_Seg], is_hidden: bool,
               reducer: Reducer[Any] | None, index: Sequence[int]) -> dict[str, Any]:
    """The LM head over every segment's rows together, ``head.chunk`` rows at a time: raw
    logits to the reducer (in position order per prompt), float32 log-softmax where a
    log-prob is needed. Returns ``first`` (prompt -> (V,) log-probs at its context's last
    position), ``picked`` ((prompt, choice) -> pieces of (target log-probs, all argmax)) and
    ``reduced`` (prompt -> reducer results)."""
    first: dict[int, torch.Tensor] = {}
    picked: dict[tuple[int, int], list[tuple[torch.Tensor, bool]]] = {}
    reduced: dict[int, list[Any]] = {}
    for pieces in _chunks(segs, head.chunk):
        x = torch.cat([segs[i].rows[r0:r1] for i, r0, r1 in pieces])
        logits = head.head(x) if is_hidden else x  # (n, V)
        at = 0
        for i, r0, r1 in pieces:
            s, part = segs[i], logits[at:at + r1 - r0]
            at += r1 - r0
            if s.reduce and reducer is not None:
                reduced.setdefault(s.prompt, []).append(
                    reducer.full(index[s.prompt], s.pos0 + r0, part))
            if s.cont < 0 and r1 == s.rows.shape[0]:
                first[s.prompt] = torch.log_softmax(part[-1].float(), dim=-1)
            elif s.cont >= 0:
                assert s.targets is not None
                lsm = torch.log_softmax(part.float(), dim=-1)
                tgt = s.targets[r0:r1].to(lsm.device)
                picked.setdefault((s.prompt, s.cont), []).append(
                    (lsm.gather(-1, tgt[:, None])[:, 0], bool((lsm.argmax(-1) == tgt).all())))
    return {"first": first, "picked": picked, "reduced": reduced}


def _results(batch: Sequence[LoglikRequest], conts: list[torch.Tensor],
             out: dict[str, Any]) -> list[LoglikResult[Any]]:
    """Per prompt: each choice's float64 sum of its float32 log-probs, and whether every
    token is the argmax."""
    results, r = [], 0
    for b, p in enumerate(batch):
        n_c = len(p.continuations)
        ll = np.zeros(n_c, dtype=np.float64)
        greedy = np.zeros(n_c, dtype=bool)
        first = out["first"][b]
        for c in range(n_c):
            ct = conts[r].to(first.device)
            pieces = out["picked"].get((b, c), [])
            ll[c] = float(torch.cat([first[ct[:1]], *[lp for lp, _ in pieces]]).double().sum())
            greedy[c] = bool(first.argmax() == ct[0]) and all(h for _, h in pieces)
            r += 1
        results.append(LoglikResult(loglik=ll, is_greedy=greedy,
                                    reduced=out["reduced"].get(b, [])))
    return results


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
