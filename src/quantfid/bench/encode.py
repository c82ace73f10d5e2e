"""lm-eval-style tokenization of (context, continuation) pairs.

As lm-evaluation-harness's ``_encode_pair``: trailing whitespace of the context moves to
the front of the continuation; the context is tokenized alone and the continuation's
tokens are those of ``tokenizer(context + continuation)`` after the first
``len(tokenizer(context))`` tokens. No special tokens are added (lm-eval's default for
causal models); an empty context is replaced by the tokenizer's EOS token, as lm-eval does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.bench.types import ChoicePrompt
from quantfid.errors import QuantfidError


def _tok(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context token ids, continuation token ids) exactly as lm-eval builds them."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _tok(tokenizer, context + continuation)
    ctx = _tok(tokenizer, context)
    return ctx, whole[len(ctx):]


@dataclass(frozen=True)
class EncodedPrompt:
    """A prompt's context ids (P >= 1) and each choice's continuation ids (each >= 1)."""

    id: str
    context: np.ndarray
    continuations: tuple[np.ndarray, ...]
    gold: int

    @property
    def n_tokens(self) -> int:
        """Tokens a prefix-shared forward processes: the context once plus every choice."""
        return int(len(self.context) + sum(len(c) for c in self.continuations))

    def gold_ids(self) -> np.ndarray:
        """The gold sequence: context then the gold continuation."""
        return np.concatenate([self.context, self.continuations[self.gold]])


def encode_prompt(tokenizer: Any, prompt: ChoicePrompt) -> EncodedPrompt:
    ctx: list[int] | None = None
    conts = []
    for i, choice in enumerate(prompt.choices):
        c, cont = encode_pair(tokenizer, prompt.context, choice)
        if not c:
            eos = getattr(tokenizer, "eos_token_id", None)
            if eos is None:
                raise QuantfidError(f"prompt {prompt.id!r} has an empty context and the "
                                    "tokenizer has no EOS token to stand in for it")
            c = [int(eos)]
        if not cont:
            raise QuantfidError(f"prompt {prompt.id!r}: choice {i} ({choice!r}) has no tokens")
        if ctx is not None and c != ctx:  # cannot happen: the context split ignores the choice
            raise QuantfidError(f"prompt {prompt.id!r}: context tokens differ between choices")
        ctx = c
        conts.append(np.asarray(cont, dtype=np.int64))
    assert ctx is not None
    return EncodedPrompt(id=prompt.id, context=np.asarray(ctx, dtype=np.int64),
                         continuations=tuple(conts), gold=prompt.gold)
