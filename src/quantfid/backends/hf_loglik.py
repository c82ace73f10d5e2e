"""Log-likelihood of continuations on a torch causal LM, the prompt prefix computed once.

Per batch of prompts: one pass of the body over the contexts (left-padded, attention mask and
explicit position ids, so each row's positions and attended tokens are those of an unpadded
run) with a key/value cache; then all choices of the batch continue from the cache (its rows
repeated per choice) in one more pass. The LM head runs on the rows that need it, packed
across the batch into chunks of ``head.chunk`` rows (its V x H weight streams from memory once
per chunk, not once per prompt and choice): each context's last position (every choice's
first token) and every choice's own positions.

Numerics: log-softmax in float32 (logits cast up from bf16/fp16 models); a choice's
log-likelihood is the float64 sum of its tokens' float32 log-probs, as lm-eval does. The pick
chunks hold the same rows with or without a reducer, so log-likelihoods never depend on
whether fidelity is measured. With a reducer, the gold sequence's logits (context positions
0 .. P-1, then the gold continuation's positions) are handed to it in position order, prompt
after prompt, in pieces of at most ``head.chunk`` rows: per-prompt fidelity costs no second
forward of the body, only the head over the context's other positions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
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
    keep = {b for b, p in enumerate(batch) if reducer is not None and p.gold is not None}
    picks = _pick_pass(head, _pick_segments(batch, states, cont_states, conts, rows, keep),
                       is_hidden)
    reduced: dict[int, list[Any]] = {}
    if reducer is not None and keep:
        reduced = _reduce_pass(head, reducer, index, batch, states, picks.saved, is_hidden)
    return _results(batch, conts, picks, reduced)


@dataclass
class _Seg:
    """Rows of one prompt's states that go through the head. cont = -1: the context's last
    position (every choice's first token); cont = c: choice c's own positions, predicting
    ``targets``. keep: the raw logits are kept for the reducer, at positions from pos0."""

    prompt: int
    cont: int
    rows: torch.Tensor  # (n, H) hidden states or (n, V) logits
    pos0: int
    keep: bool
    targets: torch.Tensor | None = None  # (n,) int64


@dataclass
class _Picks:
    first: dict[int, torch.Tensor] = field(default_factory=dict)  # prompt -> (V,) log-probs
    # (prompt, choice) -> pieces of (target log-probs (n,), every target the argmax)
    picked: dict[tuple[int, int], list[tuple[torch.Tensor, bool]]] = field(default_factory=dict)
    saved: dict[int, list[tuple[int, torch.Tensor]]] = field(default_factory=dict)


def _pick_segments(batch: Sequence[LoglikRequest], states: torch.Tensor,
                   cont_states: torch.Tensor | None, conts: list[torch.Tensor],
                   rows: list[tuple[int, int]], keep: set[int]) -> list[_Seg]:
    """Per prompt in order: its context's last row, then its choices' own rows."""
    segs = []
    for b, p in enumerate(batch):
        n = len(p.context)
        segs.append(_Seg(b, -1, states[b, -1:], n - 1, b in keep))
        for r in (r for r, (rb, _) in enumerate(rows) if rb == b):
            c, ct = rows[r][1], conts[r]
            if cont_states is not None and len(ct) > 1:
                segs.append(_Seg(b, c, cont_states[r, :len(ct) - 1], n,
                                 b in keep and p.gold == c, ct[1:]))
    return segs


def _chunks(sizes: Sequence[int], size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Pieces ``(segment, r0, r1)`` of segments of ``sizes`` rows, packed in order into
    chunks of at most ``size`` rows."""
    cur: list[tuple[int, int, int]] = []
    room = size
    for i, n in enumerate(sizes):
        r0 = 0
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


def _head_chunks(head: ChunkedHead, parts: Sequence[torch.Tensor], is_hidden: bool
                 ) -> Iterator[tuple[int, int, int, torch.Tensor]]:
    """``(part, r0, r1, logits (r1 - r0, V))`` of every part's rows, in order, the head run
    once per chunk of ``head.chunk`` rows packed across parts."""
    for pieces in _chunks([t.shape[0] for t in parts], head.chunk):
        x = torch.cat([parts[i][r0:r1] for i, r0, r1 in pieces])  # (n, H) or (n, V)
        logits = head.head(x) if is_hidden else x  # (n, V)
        at = 0
        for i, r0, r1 in pieces:
            yield i, r0, r1, logits[at:at + r1 - r0]
            at += r1 - r0


def _pick_pass(head: ChunkedHead, segs: list[_Seg], is_hidden: bool) -> _Picks:
    """Float32 log-softmax where a choice needs a log-prob; the reducer's rows kept raw. The
    chunks hold the same rows with or without a reducer, so log-likelihoods do not depend
    on whether fidelity is measured."""
    out = _Picks()
    for i, r0, r1, part in _head_chunks(head, [s.rows for s in segs], is_hidden):
        s = segs[i]
        if s.keep:
            out.saved.setdefault(s.prompt, []).append((s.pos0 + r0, part.clone()))
        lsm = torch.log_softmax(part.float(), dim=-1)  # (n, V)
        if s.cont < 0:
            out.first[s.prompt] = lsm[-1]
            continue
        assert s.targets is not None
        tgt = s.targets[r0:r1].to(lsm.device)
        out.picked.setdefault((s.prompt, s.cont), []).append(
            (lsm.gather(-1, tgt[:, None])[:, 0], bool((lsm.argmax(-1) == tgt).all())))
    return out


def _reduce_pass(head: ChunkedHead, reducer: Reducer[Any], index: Sequence[int],
                 batch: Sequence[LoglikRequest], states: torch.Tensor,
                 saved: dict[int, list[tuple[int, torch.Tensor]]], is_hidden: bool
                 ) -> dict[int, list[Any]]:
    """The reducer over each gold sequence in position order, prompt after prompt (as one
    prompt at a time would call it): the context's positions 0 .. P-2 through the head in
    shared chunks, then the rows the pick pass kept (position P-1, the gold choice's own)."""
    p_max = states.shape[1]
    order = sorted(saved)
    parts = [states[b, p_max - len(batch[b].context):p_max - 1] for b in order]  # (P-1, H)
    out: dict[int, list[Any]] = {b: [] for b in order}
    done = 0

    def finish_through(k: int) -> None:
        nonlocal done
        while done <= k:
            b = order[done]
            out[b] += [reducer.full(index[b], pos, lg) for pos, lg in saved[b]]
            done += 1

    for i, r0, r1, part in _head_chunks(head, parts, is_hidden):
        finish_through(i - 1)
        b = order[i]
        out[b].append(reducer.full(index[b], r0, part))
        if r1 == parts[i].shape[0]:
            finish_through(i)
    finish_through(len(order) - 1)
    return out


def _results(batch: Sequence[LoglikRequest], conts: list[torch.Tensor], picks: _Picks,
             reduced: dict[int, list[Any]]) -> list[LoglikResult[Any]]:
    """Per prompt: each choice's float64 sum of its float32 log-probs, and whether every
    token is the argmax."""
    results, r = [], 0
    for b, p in enumerate(batch):
        n_c = len(p.continuations)
        ll = np.zeros(n_c, dtype=np.float64)
        greedy = np.zeros(n_c, dtype=bool)
        first = picks.first[b]
        for c in range(n_c):
            ct = conts[r].to(first.device)
            pieces = picks.picked.get((b, c), [])
            ll[c] = float(torch.cat([first[ct[:1]], *[lp for lp, _ in pieces]]).double().sum())
            greedy[c] = bool(first.argmax() == ct[0]) and all(h for _, h in pieces)
            r += 1
        results.append(LoglikResult(loglik=ll, is_greedy=greedy, reduced=reduced.get(b, [])))
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
