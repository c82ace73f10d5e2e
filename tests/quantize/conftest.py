"""Small Llama models with seeded random weights, for fast quantization tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantfid.quantize.names import ModelShape, TensorInfo


def tiny_llama(hidden: int = 256, ffn: int = 512, layers: int = 2, vocab: int = 320,
               tied: bool = True, seed: int = 0) -> torch.nn.Module:
    """A Llama with ``layers`` layers and weights drawn from a seeded numpy Generator."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, tie_word_embeddings=tied)
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, p.shape).astype(np.float32)))
            else:
                p.copy_(torch.from_numpy((rng.standard_normal(p.shape) * 0.05).astype(np.float32)))
    return model


@pytest.fixture
def tiny() -> torch.nn.Module:
    return tiny_llama()


def smollm_shape() -> ModelShape:
    """The default model's quantizable tensors (SmolLM2-135M: hidden 576, FFN 1536, 30 layers,
    9 heads / 3 KV heads, vocab 49152, tied embeddings), written out by hand."""
    h, f, kv, vocab, n = 576, 1536, 192, 49152, 30
    infos = [TensorInfo("model.embed_tokens.weight", "token_embd.weight", (vocab, h), "token_embd",
                        None, tied=True)]
    per_layer = [("self_attn.q_proj", "attn_q", (h, h)), ("self_attn.k_proj", "attn_k", (kv, h)),
                 ("self_attn.v_proj", "attn_v", (kv, h)), ("self_attn.o_proj", "attn_output", (h, h)),
                 ("mlp.gate_proj", "ffn_gate", (f, h)), ("mlp.up_proj", "ffn_up", (f, h)),
                 ("mlp.down_proj", "ffn_down", (h, f))]
    for i in range(n):
        for hf, gg, shp in per_layer:
            infos.append(TensorInfo(f"model.layers.{i}.{hf}.weight", f"blk.{i}.{gg}.weight", shp, gg, i))
    return ModelShape(tensors=tuple(infos), n_layer=n, n_head=9, n_head_kv=3, tied_embeddings=True,
                      other_params=(2 * n + 1) * h)


def smollm_structure(seed: int = 0) -> torch.nn.Module:
    """A small Llama with the default model's structure as llama.cpp's presets read it: 30
    layers, 3 query heads per KV head, tied embeddings, every row width a multiple of 32 but
    not of 256 (96 here, 576 there) except ffn_down's (256 here, 1536 there)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=512, hidden_size=96, intermediate_size=256, num_hidden_layers=30,
                      num_attention_heads=3, num_key_value_heads=1, tie_word_embeddings=True,
                      max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            values = (np.ones(p.shape) if "norm" in name else rng.standard_normal(p.shape) * 0.05)
            p.copy_(torch.from_numpy(values.astype(np.float32)))
    return model
