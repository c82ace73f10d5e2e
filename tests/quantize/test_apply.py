"""quantize_model on a small random Llama: values, tying, bits per weight, cache, threads."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.backends import llamacpp
from quantfid.errors import QuantfidError
from quantfid.quantize import (
    QuantCache,
    Recipe,
    Rule,
    get_recipe,
    ggml,
    model_shape,
    quantize_model,
)
from quantfid.quantize.rtn import RTNConfig, rtn_quantize

from .conftest import smollm_structure, tiny_llama


def test_shape_inventory(tiny: torch.nn.Module) -> None:
    s = model_shape(tiny)
    assert s.tied_embeddings and s.n_layer == 2 and s.n_gqa == 2
    names = [t.name for t in s.tensors]
    assert "lm_head.weight" not in names and names.count("model.embed_tokens.weight") == 1
    assert len(names) == 1 + 2 * 7
    gg = {t.name: t.gguf for t in s.tensors}
    assert gg["model.layers.1.self_attn.o_proj.weight"] == "blk.1.attn_output.weight"
    assert gg["model.layers.0.mlp.down_proj.weight"] == "blk.0.ffn_down.weight"
    untied = model_shape(tiny_llama(tied=False))
    assert not untied.tied_embeddings
    assert {t.category for t in untied.tensors} >= {"output", "token_embd", "attn_v", "ffn_down"}


def test_quantize_model_values_and_report(tiny: torch.nn.Module) -> None:
    ref = copy.deepcopy(tiny)
    recipe = Recipe("t", "test", rules=(Rule(r"ffn_down", "Q4_K"), Rule(r"attn_v", "rtn-w3g64-asym"),
                                        Rule(r"attn_q", "F32")), default="Q5_0")
    rep = quantize_model(tiny, recipe, progress=False)
    sd_ref, sd_q = ref.state_dict(), tiny.state_dict()
    for name, scheme in rep.types.items():
        w = sd_ref[name].numpy()
        if scheme in ggml.GGML_TYPES:
            expect = ggml.dequantize(ggml.quantize(w, scheme), scheme, w.shape[1])
        elif scheme.startswith("rtn-"):
            expect = rtn_quantize(sd_ref[name], RTNConfig.parse(scheme)).numpy()
        else:
            expect = w
        np.testing.assert_array_equal(sd_q[name].numpy(), expect, err_msg=name)
    assert tiny.lm_head.weight is tiny.model.embed_tokens.weight       # still tied
    for name in sd_ref:
        if "norm" in name:
            assert torch.equal(sd_ref[name], sd_q[name])
    # bits per weight by hand: 256-wide rows; ffn_down is 512 wide (Q4_K fits)
    h, f, kv, v = 256, 512, 128, 320
    n_down, n_v, n_q = 2 * h * f, 2 * kv * h, 2 * h * h
    n_rest = v * h + 2 * (h * h + kv * h + 2 * f * h)
    norms = 5 * h
    bits = n_down * 4.5 + n_v * (3 + 32 / 64) + n_q * 32 + n_rest * 5.5 + norms * 32
    total = n_down + n_v + n_q + n_rest + norms
    assert rep.n_weights == total
    assert rep.bits_per_weight == pytest.approx(bits / total)
    assert rep.type_counts()["Q5_0"] == 1 + 2 * 4
    assert set(rep.to_json()) >= {"recipe", "bits_per_weight", "bytes", "hash", "types"}


def test_cache_and_threads_give_identical_weights() -> None:
    base = tiny_llama(seed=5)
    recipe = get_recipe("IQ4_XS")
    a, b, c = (copy.deepcopy(base) for _ in range(3))
    cache = QuantCache()
    ra = quantize_model(a, recipe, cache=cache, reference_hash="r", threads=1, progress=False)
    rb = quantize_model(b, recipe, cache=cache, reference_hash="r", threads=4, progress=False)
    rc = quantize_model(c, recipe, progress=False)
    assert cache.hits == cache.misses > 0
    for x in (b, c):
        for (n, p), q in zip(a.named_parameters(), x.parameters(), strict=True):
            assert torch.equal(p, q), n
    assert ra.hash == rb.hash and ra.bits_per_weight == rc.bits_per_weight


def test_imatrix_needed_and_hash_changes() -> None:
    from quantfid.quantize import Imatrix

    m = tiny_llama()
    with pytest.raises(QuantfidError, match="importance matrix"):
        quantize_model(copy.deepcopy(m), get_recipe("IQ2_XXS"), progress=False)
    rng = np.random.default_rng(0)
    im = Imatrix({t.gguf or t.name: rng.uniform(0.1, 1, t.n_per_row).astype(np.float32)
                  for t in model_shape(m).tensors})
    a = quantize_model(copy.deepcopy(m), get_recipe("Q4_K_M"), progress=False)
    b = quantize_model(copy.deepcopy(m), get_recipe("Q4_K_M"), im, progress=False)
    assert a.hash != b.hash and b.imatrix_hash == im.hash


@pytest.mark.skipif(not llamacpp.available(), reason="llama-cpp-python is not installed")
def test_presets_match_llamacpp_files_on_default_structure(tmp_path: Path) -> None:
    """Every llama.cpp preset recipe (``-pure`` ones too) gives each tensor the type llama.cpp
    writes into its own file of that preset (``llama_model_quantize`` on an F32 GGUF of a
    model with the default model's structure: 30 layers, GQA 3, tied embeddings, rows that
    are not a multiple of 256 except ffn_down's), and exactly the presets that need an
    importance matrix here are the ones llama.cpp refuses without one."""
    from quantfid.quantize import agreement, list_recipes
    from quantfid.quantize.gguftypes import gguf_types

    model = smollm_structure()
    shape = model_shape(model)
    assert shape.n_layer == 30 and shape.n_gqa == 3 and shape.tied_embeddings
    src = agreement.export_reference(model, tmp_path / "f32.gguf")
    presets = [r for r in list_recipes() if r.preset is not None and not r.rules]
    assert {"Q4_K_M", "IQ4_XS", "Q2_K-pure", "IQ3_M"} <= {r.name for r in presets}
    refused, made = [], []
    for recipe in presets:
        out = tmp_path / f"{recipe.name}.gguf"
        try:
            agreement.llamacpp_quantize(src, out, recipe, threads=1)
        except QuantfidError:
            refused.append(recipe.name)
            continue
        made.append(recipe.name)
        diff = agreement.type_differences(recipe.type_map(shape), gguf_types(out))
        assert not diff, (recipe.name, diff[:5])
        out.unlink()
    assert refused == [r.name for r in presets if r.needs_imatrix(shape)]
    assert len(made) >= 25


def test_source_module_equals_deep_copy() -> None:
    """One working copy re-quantized from the reference equals a fresh deep copy each time."""
    ref = tiny_llama(seed=6)
    work = copy.deepcopy(ref)
    for name in ("Q4_0-pure", "rtn-w3g64-asym", "Q8_0"):
        quantize_model(work, get_recipe(name), source=ref, progress=False)
        fresh = copy.deepcopy(ref)
        quantize_model(fresh, get_recipe(name), progress=False)
        for (n, p), q in zip(work.named_parameters(), fresh.parameters(), strict=True):
            assert torch.equal(p, q), (name, n)
    with pytest.raises(QuantfidError, match="shape"):
        quantize_model(copy.deepcopy(ref), get_recipe("Q8_0"), source=tiny_llama(hidden=128),
                       progress=False)
