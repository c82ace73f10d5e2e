"""A tiny random Llama and byte-level BPE tokenizer, saved as a local model directory.

For tests and demos that need a real transformers model without a download: the
tokenizer is trained (deterministically) on a slice of the built-in ``docs`` corpus and
the weights are drawn from a seeded generator, so the same arguments give the same files.
"""

from __future__ import annotations

from pathlib import Path

import torch


def make_tiny_tokenizer(vocab_size: int = 384, add_bos: bool = False, chars: int = 40_000):  # type: ignore[no-untyped-def]
    """A byte-level BPE ``PreTrainedTokenizerFast`` with ``<s>`` (BOS, id 0) and ``</s>``
    (EOS, id 1); with ``add_bos`` it puts BOS in front of encoded text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from quantfid.corpus import builtin

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([builtin("docs").text[:chars]], trainer=trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


def make_tiny_llama(path: str | Path, seed: int = 0, vocab_size: int = 384, hidden: int = 64,
                    layers: int = 2, add_bos: bool = False, init_std: float = 0.2,
                    max_positions: int = 4096, tokenizer_chars: int = 40_000) -> Path:
    """Save a random ``LlamaForCausalLM`` (float32 safetensors) and its tokenizer to ``path``.

    init_std: weight scale; larger than transformers' 0.02 so that the output
    distributions are far from uniform and quantization error is visible.
    tokenizer_chars: characters of ``docs`` the tokenizer is trained on (another value gives
    another vocabulary of the same size).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer(vocab_size, add_bos=add_bos, chars=tokenizer_chars)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=1,
                      initializer_range=init_std, tie_word_embeddings=False)
    gen = torch.Generator().manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * init_std)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
