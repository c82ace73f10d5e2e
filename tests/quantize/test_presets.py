"""llama.cpp preset mixes and the default cohort, on the default model's shapes (no weights)."""

from __future__ import annotations

import dataclasses

import pytest

from quantfid.errors import QuantfidError
from quantfid.quantize.names import ModelShape, TensorInfo
from quantfid.quantize.presets import preset_types, use_more_bits
from quantfid.quantize.recipes import DEFAULT_COHORT, get_recipe, list_recipes, resolve_recipes

from .conftest import smollm_shape


def _t(types: dict[str, str], layer: int | None, part: str) -> str:
    key = "model.embed_tokens.weight" if layer is None else f"model.layers.{layer}.{part}.weight"
    return types[key]


def test_use_more_bits_pattern_30_layers() -> None:
    # n/8 = 3, 7n/8 = 26: layers 0-2, 26-29 and every third from 5 (5, 8, ..., 23)
    expected = [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29]
    assert [i for i in range(30) if use_more_bits(i, 30)] == expected


def test_q4_k_m_on_576_wide_model() -> None:
    s = smollm_shape()
    ty = preset_types("Q4_K_M", s)
    assert _t(ty, None, "") == "Q8_0"                     # tied: output rule, 576 % 256 -> Q8_0
    assert _t(ty, 0, "self_attn.v_proj") == "Q8_0"        # use_more_bits -> Q6_K -> fallback Q8_0
    assert _t(ty, 3, "self_attn.v_proj") == "Q5_0"        # Q4_K -> fallback Q5_0
    assert _t(ty, 5, "self_attn.v_proj") == "Q8_0"
    assert _t(ty, 0, "mlp.down_proj") == "Q6_K"           # 1536 wide: no fallback
    assert _t(ty, 4, "mlp.down_proj") == "Q4_K"
    assert _t(ty, 29, "mlp.down_proj") == "Q6_K"
    assert _t(ty, 7, "self_attn.q_proj") == "Q5_0"
    assert _t(ty, 7, "mlp.gate_proj") == "Q5_0"


def test_other_presets_on_576_wide_model() -> None:
    s = smollm_shape()
    q3m = preset_types("Q3_K_M", s)
    assert _t(q3m, 0, "self_attn.v_proj") == "Q5_1" and _t(q3m, 2, "self_attn.v_proj") == "Q5_0"
    assert _t(q3m, 0, "mlp.down_proj") == "Q5_K" and _t(q3m, 1, "mlp.down_proj") == "Q4_K"
    assert _t(q3m, 9, "self_attn.o_proj") == "Q5_0" and _t(q3m, 9, "mlp.up_proj") == "Q4_0"
    q4s = preset_types("Q4_K_S", s)
    assert _t(q4s, 3, "self_attn.v_proj") == "Q5_1" and _t(q4s, 4, "self_attn.v_proj") == "Q5_0"
    assert _t(q4s, 2, "mlp.down_proj") == "Q5_K" and _t(q4s, 3, "mlp.down_proj") == "Q4_K"
    iq4 = preset_types("IQ4_NL", s)                       # no imatrix: first 3 ffn_down Q5_K
    assert _t(iq4, 2, "mlp.down_proj") == "Q5_K" and _t(iq4, 3, "mlp.down_proj") == "IQ4_NL"
    assert preset_types("IQ4_NL", s, has_imatrix=True)["model.layers.2.mlp.down_proj.weight"] == "IQ4_NL"
    q40 = preset_types("Q4_0", s, has_imatrix=True)       # imatrix guard: Q4_1 on first ffn_down
    assert _t(q40, 0, "mlp.down_proj") == "Q4_1" and _t(q40, 3, "mlp.down_proj") == "Q4_0"
    assert set(preset_types("Q8_0", s).values()) == {"Q8_0"}
    pure = preset_types("Q4_0", s, pure=True)
    assert set(pure.values()) == {"Q4_0"}                 # --pure: the embedding too


def test_presets_on_256_multiple_model() -> None:
    """hidden 512: no fallbacks; tied token_embd gets the output's Q6_K, untied output too."""
    def shape(tied: bool) -> ModelShape:
        infos = [TensorInfo("model.embed_tokens.weight", "token_embd.weight", (1000, 512), "token_embd", None)]
        if not tied:
            infos.append(TensorInfo("lm_head.weight", "output.weight", (1000, 512), "output", None))
        for i in range(8):
            infos += [TensorInfo(f"model.layers.{i}.self_attn.v_proj.weight", f"blk.{i}.attn_v.weight",
                                 (128, 512), "attn_v", i),
                      TensorInfo(f"model.layers.{i}.mlp.down_proj.weight", f"blk.{i}.ffn_down.weight",
                                 (512, 1024), "ffn_down", i)]
        return ModelShape(tuple(infos), n_layer=8, n_head=8, n_head_kv=2, tied_embeddings=tied,
                          other_params=0)
    tied = preset_types("Q4_K_M", shape(True))
    assert tied["model.embed_tokens.weight"] == "Q6_K"
    untied = preset_types("Q4_K_M", shape(False))
    assert untied["lm_head.weight"] == "Q6_K" and untied["model.embed_tokens.weight"] == "Q4_K"
    # n_gqa = 4: Q2_K puts attn_v at Q4_K (Q3_K below 4)
    assert preset_types("Q2_K", shape(False))["model.layers.0.self_attn.v_proj.weight"] == "Q4_K"
    q3l = preset_types("Q3_K_L", shape(False))
    assert q3l["model.layers.5.self_attn.v_proj.weight"] == "Q5_K"
    assert q3l["model.layers.5.mlp.down_proj.weight"] == "Q5_K"


def test_imatrix_requirements() -> None:
    s = smollm_shape()
    for name in ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "Q2_K_S"):
        need = get_recipe(name).needs_imatrix(s)
        assert need and not any("embed" in n for n in need), name
    for name in DEFAULT_COHORT:
        assert get_recipe(name).needs_imatrix(s) == [], name


def test_bits_per_weight_by_hand() -> None:
    s = smollm_shape()
    n_q = 49152 * 576 + 30 * (2 * 576 * 576 + 2 * 192 * 576 + 3 * 1536 * 576)
    norms = 61 * 576
    assert s.other_params == norms and sum(t.numel for t in s.tensors) == n_q
    assert get_recipe("Q8_0").bits_per_weight(s) == pytest.approx((n_q * 8.5 + norms * 32) / (n_q + norms))
    # Q6_K: ffn_down at 6.5625 bpw, everything else falls back to Q8_0
    down = 30 * 576 * 1536
    expect = ((n_q - down) * 8.5 + down * 210 * 8 / 256 + norms * 32) / (n_q + norms)
    assert get_recipe("Q6_K").bits_per_weight(s) == pytest.approx(expect)


def test_default_cohort_distinct_and_spans_2_to_8_5() -> None:
    s = smollm_shape()
    maps = {name: tuple(sorted(get_recipe(name).type_map(s).items())) for name in DEFAULT_COHORT}
    assert len(set(maps.values())) == len(DEFAULT_COHORT) >= 28
    bpw = {name: get_recipe(name).bits_per_weight(s) for name in DEFAULT_COHORT}
    assert min(bpw.values()) < 2.5 and max(bpw.values()) > 8.4
    assert sum(b >= 8.0 for b in bpw.values()) >= 3              # near-lossless ones
    assert "Q4_1" in DEFAULT_COHORT                               # the sanity-check quant
    assert sum(b < 5.0 for b in bpw.values()) >= 10               # RTN / mixes cover 2-5
    presets = [n for n in DEFAULT_COHORT if get_recipe(n).preset and not get_recipe(n).pure]
    assert min(bpw[n] for n in presets) > 5.0 and max(bpw[n] for n in presets) <= 8.51


def test_registry() -> None:
    names = [r.name for r in list_recipes()]
    assert len(names) == len(set(names))
    for n in ("Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q5_1", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
              "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ2_S"):
        assert n in names
    assert [r.name for r in resolve_recipes("Q8_0, rtn-w4g32-sym")] == ["Q8_0", "rtn-w4g32-sym"]
    assert len(resolve_recipes("default")) == len(DEFAULT_COHORT)
    with pytest.raises(QuantfidError):
        get_recipe("Q9_K")
    r = get_recipe("mix-ends8-mid3")
    assert dataclasses.replace(r).to_json() == type(r).from_json(r.to_json()).to_json()


def test_q4_1_preset_matches_the_embedded_llama_quantize_file() -> None:
    """The embedded GGUF was made by llama-quantize Q4_1: our Q4_1 mix gives its tensor types."""
    import libgguf

    from quantfid import embedded

    try:
        path = embedded.gguf_path()
    except QuantfidError as e:
        pytest.skip(str(e))
    theirs = {t.name: t.qtype for t in libgguf.inspect_gguf(path).tensors if t.qtype != "F32"}
    s = smollm_shape()
    types = preset_types("Q4_1", s)
    ours = {t.gguf: types[t.name] for t in s.tensors}
    assert ours == theirs
