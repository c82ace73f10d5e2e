"""Quants written as GGUF load back through transformers' GGUF loader with the same weights."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from quantfid.quantize import Recipe, Rule, quantize_model
from quantfid.quantize.export import rope_permutation, write_gguf, write_safetensors

from .conftest import tiny_llama


def test_rope_permutation_inverts_transformers() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    perm = rope_permutation(64, 4)
    back = LlamaTensorProcessor()._reverse_permute_weights(w[perm], 4, 4)
    np.testing.assert_array_equal(back, w)


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_round_trip(tmp_path, tied: bool) -> None:
    from transformers import AutoModelForCausalLM

    m = tiny_llama(tied=tied, seed=3)
    recipe = Recipe("mix", "test", rules=(Rule("ffn_down", "Q4_K"), Rule("attn_v", "rtn-w4g32-sym"),
                                          Rule("attn_k", "F16"), Rule("attn_q", "Q6_K")),
                    default="Q8_0")
    rep = quantize_model(m, recipe, keep_data=True, progress=False)
    path = write_gguf(tmp_path / "q.gguf", m, rep)
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name,
                                                dtype=torch.float32)
    got = back.state_dict()
    for name, p in m.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue
        assert torch.equal(got[name], p), name
    ids = torch.tensor([[1, 5, 9, 200, 3]])
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, m(ids).logits, atol=1e-5)


def test_safetensors_export(tmp_path) -> None:
    from safetensors.torch import load_file

    m = tiny_llama(seed=4)
    recipe = Recipe("r4", "test", default="rtn-w4g64-asym")
    rep = quantize_model(copy.deepcopy(m), recipe, progress=False)
    q = copy.deepcopy(m)
    quantize_model(q, recipe, progress=False)
    d = write_safetensors(tmp_path / "r4", q, rep, recipe)
    tensors = load_file(d / "model.safetensors")
    for name, p in q.named_parameters():
        assert torch.equal(tensors[name], p), name
    meta = json.loads((d / "recipe.json").read_text())
    assert meta["recipe"]["default"] == "rtn-w4g64-asym" and meta["report"]["hash"] == rep.hash
    assert (d / "config.json").exists()
