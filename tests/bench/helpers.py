"""Helpers for tests/bench: a tiny random Llama and a tiny greedy tokenizer."""

from __future__ import annotations

from pathlib import Path

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


def tiny_family(root: Path, scales: dict[str, float], seed: int = 0) -> dict[str, Path]:
    """A tiny random Llama saved as a model directory (``ref``) and perturbed copies of it
    (weights + N(0, scale) noise from a seeded generator), one directory each, same tokenizer."""
    import shutil

    from transformers import AutoModelForCausalLM

    from quantfid.backends.tiny import make_tiny_llama

    root = Path(root)
    ref = make_tiny_llama(root / "ref", seed=seed)
    out = {"ref": ref}
    rng = np.random.default_rng(seed + 100)
    for name, scale in scales.items():
        m = AutoModelForCausalLM.from_pretrained(ref)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.from_numpy(rng.normal(0, scale, size=tuple(p.shape)).astype(np.float32)))
        d = root / name
        m.save_pretrained(d)
        for f in ref.iterdir():
            if f.name.startswith("tokenizer") or f.name == "special_tokens_map.json":
                shutil.copy(f, d / f.name)
        out[name] = d
    return out
