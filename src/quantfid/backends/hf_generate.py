"""Greedy generation with stop sequences on a torch causal LM.

Argmax decoding with a key/value cache, float32 logits; stops at the EOS token, after
``max_tokens``, or at the first stop sequence in the decoded text (the text is cut before it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]
    stop: str | None  # the stop sequence hit, "eos", or None when max_tokens ran out


def _cache(out: Any) -> Any:
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)


@torch.inference_mode()
def greedy(module: Any, tokenizer: Any, device: torch.device, prompt: str, *,
           max_tokens: int = 256, stop: Sequence[str] = ()) -> Generation:
    """Greedy continuation of ``prompt`` (no special tokens added)."""
    ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    inp = torch.tensor([ids], dtype=torch.long, device=device)
    cache = None
    new: list[int] = []
    text = ""
    for _ in range(max_tokens):
        out = module(input_ids=inp, cache=cache, use_cache=True, logits_to_keep=1)
        cache = _cache(out)
        nxt = int(out.logits[0, -1].float().argmax())
        if eos is not None and nxt == eos:
            return Generation(text, tuple(new), "eos")
        new.append(nxt)
        text = tokenizer.decode(new, skip_special_tokens=True)
        hits = [(text.find(s), s) for s in stop if s in text]
        if hits:
            pos, s = min(hits)
            return Generation(text[:pos], tuple(new), s)
        inp = torch.tensor([[nxt]], dtype=torch.long, device=device)
    return Generation(text, tuple(new), None)
