"""Which tensors of a model get quantized, and their llama.cpp (GGUF) names.

The quantizable tensors are the 2-D weights of every ``nn.Linear`` and ``nn.Embedding``;
norms and biases stay float32. A weight shared by two modules (tied embeddings: the output
projection reuses the token embedding) is listed once, under the embedding, as llama.cpp
does (``token_embd`` then takes the output tensor's type choice). Names follow llama.cpp's
Llama architecture (``blk.N.attn_q`` ...); other architectures keep their HF names and a
category of ``other``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

#: HF (transformers Llama) name -> GGUF name, for the parameters of one layer.
_LAYER_MAP = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_MAP = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)$")

#: categories, as llama.cpp's ``tensor_get_category``
CATEGORIES = ("token_embd", "output", "attn_q", "attn_k", "attn_v", "attn_output",
              "ffn_gate", "ffn_up", "ffn_down", "other")


def gguf_name(hf_name: str) -> str | None:
    """The GGUF tensor name of an HF Llama parameter name, or None when there is none."""
    if hf_name in _TOP_MAP:
        return _TOP_MAP[hf_name]
    m = _LAYER_RE.match(hf_name)
    if m and m.group(2) in _LAYER_MAP:
        return f"blk.{m.group(1)}.{_LAYER_MAP[m.group(2)]}"
    return None


_LAYER_INV = {v: k for k, v in _LAYER_MAP.items()}
_TOP_INV = {v: k for k, v in _TOP_MAP.items()}
_GGUF_LAYER_RE = re.compile(r"^blk\.(\d+)\.(.+)$")


def hf_name(gguf: str) -> str | None:
    """The HF Llama parameter name of a GGUF tensor name (the inverse of :func:`gguf_name`),
    or None when there is none."""
    if gguf in _TOP_INV:
        return _TOP_INV[gguf]
    m = _GGUF_LAYER_RE.match(gguf)
    if m and m.group(2) in _LAYER_INV:
        return f"model.layers.{m.group(1)}.{_LAYER_INV[m.group(2)]}"
    return None


def category(gguf: str | None) -> str:
    """llama.cpp's category of a GGUF tensor name (``other`` when unknown)."""
    if gguf is None:
        return "other"
    if gguf == "output.weight":
        return "output"
    if gguf == "token_embd.weight":
        return "token_embd"
    for cat in CATEGORIES[2:-1]:
        if f".{cat}." in gguf:
            return cat
    return "other"


@dataclass(frozen=True)
class TensorInfo:
    """One quantizable weight: HF name, GGUF name, shape (out, in), category and layer."""

    name: str
    gguf: str | None
    shape: tuple[int, int]
    category: str
    layer: int | None
    tied: bool = False

    @property
    def n_per_row(self) -> int:
        return self.shape[1]

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


@dataclass(frozen=True)
class ModelShape:
    """The quantizable weights of a model and the hyper-parameters the presets read."""

    tensors: tuple[TensorInfo, ...]
    n_layer: int
    n_head: int
    n_head_kv: int
    tied_embeddings: bool
    other_params: int  # elements of the parameters that stay float (norms, biases)

    @property
    def n_gqa(self) -> int:
        return self.n_head // max(1, self.n_head_kv)

    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}


def model_shape(module: torch.nn.Module) -> ModelShape:
    """Inventory the quantizable weights of ``module`` (works on a ``meta``-device model)."""
    seen: dict[int, str] = {}
    infos: list[TensorInfo] = []
    quant_ids: set[int] = set()
    names = {id(p): n for n, p in module.named_parameters()}
    for mod_name, mod in module.named_modules():
        if not isinstance(mod, torch.nn.Linear | torch.nn.Embedding):
            continue
        w = mod.weight
        if w.ndim != 2 or id(w) in seen:
            continue
        name = names.get(id(w), f"{mod_name}.weight")
        seen[id(w)] = name
        quant_ids.add(id(w))
        g = gguf_name(name)
        m = _LAYER_RE.match(name)
        infos.append(TensorInfo(name=name, gguf=g, shape=(int(w.shape[0]), int(w.shape[1])),
                                category=category(g), layer=int(m.group(1)) if m else None))
    out_w = getattr(module, "lm_head", None)
    get_emb = getattr(module, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    tied = bool(out_w is not None and emb is not None and out_w.weight is emb.weight)
    if tied:
        infos = [TensorInfo(t.name, t.gguf, t.shape, t.category, t.layer, tied=True)
                 if t.category == "token_embd" else t for t in infos]
    other = sum(p.numel() for p in module.parameters() if id(p) not in quant_ids)
    cfg = getattr(module, "config", None)
    layers = {t.layer for t in infos if t.layer is not None}
    n_layer = int(getattr(cfg, "num_hidden_layers", 0) or (max(layers) + 1 if layers else 0))
    n_head = int(getattr(cfg, "num_attention_heads", 1) or 1)
    n_head_kv = int(getattr(cfg, "num_key_value_heads", n_head) or n_head)
    return ModelShape(tensors=tuple(infos), n_layer=n_layer, n_head=n_head, n_head_kv=n_head_kv,
                      tied_embeddings=tied, other_params=int(other))


def meta_model(config: object) -> torch.nn.Module:
    """A model built from ``config`` on the meta device: shapes only, no memory, no weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
