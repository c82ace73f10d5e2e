"""Helpers for tests/bench: a tiny random Llama and a tiny greedy tokenizer."""

from __future__ import annotations

import numpy as np
import torch


def tiny_llama(rng: np.random.Generator, vocab: int = 48) -> torch.nn.Module:
    """A 2-layer Llama whose weights come from ``rng`` (no global torch RNG)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      max_position_embeddings=128, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.from_numpy(rng.normal(0.0, 0.5, size=tuple(p.shape)).astype(np.float32)))
    return model.eval()


class GreedyTokenizer:
    """Longest-match tokenizer over a small vocabulary; merges across word boundaries.

    Pieces include " a" style leading-space tokens and "ab" merges, so tokenizing a string
    whole can differ from tokenizing its halves, as with real BPE.
    """

    def __init__(self) -> None:
        chars = list("abcdefghij .\n")
        pieces = [" a", " b", " c", "ab", "abc", " ab", "  ", "\n ", "e.", ". "]
        self.vocab = {p: i for i, p in enumerate(chars + pieces)}
        self.eos_token_id = len(self.vocab)

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        out, i = [], 0
        longest = max(len(p) for p in self.vocab)
        while i < len(text):
            for n in range(min(longest, len(text) - i), 0, -1):
                if text[i:i + n] in self.vocab:
                    out.append(self.vocab[text[i:i + n]])
                    i += n
                    break
            else:
                raise ValueError(f"cannot tokenize {text[i]!r}")
        return {"input_ids": out}


class ByteTokenizer:
    """One token per UTF-8 byte (vocabulary 256); id 0 doubles as EOS."""

    eos_token_id = 0

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", "replace")
