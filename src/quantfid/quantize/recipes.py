"""The built-in recipes and the default cohort.

Presets carry llama.cpp's names and reproduce its per-tensor choices. On the default model
(hidden size 576, not a multiple of 256) they fall back to 32-wide block types on every tensor
but ``ffn_down`` and keep the tied embedding at Q8_0, so they span about 5 to 8.5 bits per
weight. ``-pure`` recipes (``llama-quantize --pure``: one type everywhere, the embedding too),
RTN recipes and mixed recipes cover 2 to 5.
"""

from __future__ import annotations

from quantfid.errors import QuantfidError
from quantfid.quantize.presets import PRESET_DEFAULT
from quantfid.quantize.recipe import Recipe, Rule
from quantfid.quantize.rtn import RTNConfig

_ATTN = r"attn_(q|k|v|output)\.|self_attn\."
_FFN = r"ffn_(gate|up|down)\.|mlp\."
_EMB = r"token_embd|output\.weight|embed_tokens|lm_head"


def _presets() -> list[Recipe]:
    out = []
    for name in PRESET_DEFAULT:
        out.append(Recipe(name, f"llama.cpp preset {name} (llama-quantize per-tensor mix)", preset=name))
    for name in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "IQ4_NL", "Q4_K", "Q3_K", "Q2_K", "Q6_K"):
        preset = name if name in PRESET_DEFAULT else f"{name}_S"
        out.append(Recipe(f"{name}-pure", f"{name} on every weight, the embedding too "
                          "(llama-quantize --pure; llama.cpp fallbacks)", preset=preset, pure=True))
    return out


def _rtn() -> list[Recipe]:
    out = []
    for bits in (8, 6, 5, 4, 3, 2):
        for group in (32, 64, 128):
            for sym in (True, False):
                cfg = RTNConfig(bits, group, sym)
                out.append(Recipe(cfg.name, f"round-to-nearest {bits}-bit, groups of {group}, "
                                  f"{'symmetric' if sym else 'asymmetric'}, on every weight",
                                  default=cfg.name))
    return out


def _mixed() -> list[Recipe]:
    return [
        Recipe("mix-attn4-ffn3", "RTN: attention and embedding 4-bit, FFN 3-bit (groups of 64, asym)",
               rules=(Rule(_FFN, "rtn-w3g64-asym"),), default="rtn-w4g64-asym"),
        Recipe("mix-attn8-ffn3", "RTN: attention 8-bit, FFN 3-bit, embedding 4-bit (groups of 64)",
               rules=(Rule(_ATTN, "rtn-w8g64-sym"), Rule(_FFN, "rtn-w3g64-asym")),
               default="rtn-w4g64-asym"),
        Recipe("mix-attn3-ffn4", "RTN: attention 3-bit, FFN and embedding 4-bit (groups of 64, asym)",
               rules=(Rule(_ATTN, "rtn-w3g64-asym"),), default="rtn-w4g64-asym"),
        Recipe("mix-ffn2-rest4", "RTN: FFN 2-bit (groups of 32), attention and embedding 4-bit",
               rules=(Rule(_FFN, "rtn-w2g32-asym"),), default="rtn-w4g32-asym"),
        Recipe("mix-ends8-mid3", "RTN: layers 0-3 and 26-29 8-bit, the middle layers 3-bit, "
               "embedding 4-bit (groups of 64)",
               rules=(Rule(_EMB, "rtn-w4g64-asym"), Rule(".", "rtn-w8g64-sym", (0, 4)),
                      Rule(".", "rtn-w8g64-sym", (26, 1 << 30))),
               default="rtn-w3g64-asym"),
        Recipe("mix-q4_0-embd-q8_0", "Q4_0 on the layers, the embedding kept at Q8_0 with "
               "attn_v at Q8_0", rules=(Rule(_EMB, "Q8_0"), Rule(r"attn_v\.", "Q8_0")),
               default="Q4_0"),
        Recipe("mix-q4_k_m-embd-q4_k", "Q4_K_M with the embedding quantized as Q4_K "
               "(--token-embedding-type q4_k; falls back to Q5_0 here)", preset="Q4_K_M",
               rules=(Rule(_EMB, "Q4_K"),)),
        Recipe("mix-q3_k_m-embd-q3_k", "Q3_K_M with the embedding quantized as Q3_K "
               "(--token-embedding-type q3_k; falls back to Q4_0 here)", preset="Q3_K_M",
               rules=(Rule(_EMB, "Q3_K"),)),
        Recipe("mix-mxfp4", "MXFP4 (4-bit floats, shared 8-bit exponent per 32) on every weight",
               default="MXFP4"),
        Recipe("mix-iq4_nl-ffn-q2_k", "IQ4_NL everywhere, the embedding too, ffn_down Q2_K",
               rules=(Rule(r"ffn_down", "Q2_K"),), default="IQ4_NL"),
    ]


def _registry() -> dict[str, Recipe]:
    out: dict[str, Recipe] = {}
    for r in (*_presets(), *_rtn(), *_mixed()):
        if r.name in out:
            raise AssertionError(f"duplicate recipe {r.name}")
        out[r.name] = r
    return out


RECIPES: dict[str, Recipe] = _registry()

#: The default cohort: distinct per-tensor type maps on the default model, about 2 to 8.5 bpw,
#: Q4_1 (a near-exact re-quantization of the Q4_1-derived reference) and several other
#: near-lossless quants included. Needs no importance matrix.
DEFAULT_COHORT: tuple[str, ...] = (
    # llama.cpp presets (~5.1 to 8.5 bpw here)
    "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0",
    "IQ4_NL", "IQ4_XS", "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_S",
    # one type everywhere, the embedding too (~4.1 to 4.5)
    "Q4_0-pure", "Q2_K-pure", "mix-iq4_nl-ffn-q2_k", "mix-mxfp4",
    # RTN (2.3 to 8.5); 2-bit RTN destroys a 135M model (KL ~18 nats), one is enough
    "rtn-w8g32-sym", "rtn-w8g128-asym", "rtn-w6g64-sym", "rtn-w4g128-sym", "rtn-w4g64-asym",
    "rtn-w3g32-asym", "rtn-w3g128-asym", "rtn-w2g128-asym",
    # mixed
    "mix-attn4-ffn3", "mix-ffn2-rest4", "mix-ends8-mid3",
)


def get_recipe(name: str) -> Recipe:
    """The built-in recipe ``name``, or an RTN recipe for any ``rtn-w<b>g<g>-<sym|asym>``."""
    if name in RECIPES:
        return RECIPES[name]
    if name.startswith("rtn-"):
        cfg = RTNConfig.parse(name)
        return Recipe(cfg.name, f"round-to-nearest {cfg.bits}-bit, groups of {cfg.group}",
                      default=cfg.name)
    raise QuantfidError(f"unknown recipe {name!r}; `quantfid cohort list` shows them")


def list_recipes() -> list[Recipe]:
    """Every built-in recipe, presets first."""
    return list(RECIPES.values())


def resolve_recipes(spec: str) -> list[Recipe]:
    """``default`` -> the default cohort; else a comma-separated list of names."""
    names = DEFAULT_COHORT if spec.strip() == "default" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise QuantfidError("no recipes given (use --recipes default or NAME,NAME)")
    return [get_recipe(n) for n in names]
