"""Numerics models: how a torch module computes when it stands in for a deployed runtime.

``weights``
    The weight-only simulation: the module holds the dequantized weights (float32) and
    computes everything else in its own dtype. Nothing is patched. The right model for RTN
    recipes and for formats whose kernels dequantize weights to bf16/fp16 before the product.
``ggml-cpu``
    llama.cpp's CPU backend (as ``llama-perplexity`` runs it: flash attention on, f16 KV
    cache), as far as it changes results:

    * every linear layer's input row is rounded to its weight type's *vec-dot type* before
      the product (:mod:`quantfid.quantize.actquant`: q8_0 for Q4_0/Q5_0/Q8_0/IQ4_NL/MXFP4,
      q8_1 for Q4_1/Q5_1 (with its fp16 block sum, applied through the weight minima),
      q8_K for the K-quants and IQ4_XS, f16 for F16 weights, nothing for F32 weights);
      the tied output head uses the token embedding's type, as llama.cpp does;
    * keys (after RoPE) and values are rounded to f16, as the KV cache stores them, for the
      reference and the quants alike; the attention itself stays float32, as ggml's tiled
      flash-attention kernel for prompt batches computes it (Q, scores, softmax and the
      weighted sum of V in float32).

    Left out (below the measured agreement, see docs/numerics.md): accumulation order
    (ggml sums integer block products, then scales), ggml's own exp/SiLU/RoPE approximations,
    the f16 Q and f16 accumulators of the single-token (decode) attention path, and
    llama.cpp's GPU backends (CUDA, Metal, Vulkan), which quantize activations differently
    (or not at all) and are not emulated.

:func:`apply_numerics` installs a model on a module and returns a handle whose
:meth:`~NumericsHandle.remove` restores it exactly.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch

from quantfid.errors import QuantfidError
from quantfid.quantize import actquant

NUMERICS: tuple[str, ...] = ("weights", "ggml-cpu")
_KV_PREFIX = "quantfid_f16kv_"


def default_numerics(types: dict[str, str] | None) -> str:
    """What ``auto`` means for weights of these types: ``ggml-cpu`` when any weight has a
    llama.cpp type whose CPU product rounds activations (a GGML quant, F16, BF16), else
    ``weights`` (RTN recipes, float models). A GGUF file loaded through transformers is
    ``ggml-cpu`` whatever its types (llama.cpp would serve it)."""
    rounds = any(actquant.vec_dot_type(s) != "f32" for s in (types or {}).values())
    return "ggml-cpu" if rounds else "weights"


def _f16(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float16).to(t.dtype)


def _inner_attention(name: str, module: torch.nn.Module) -> Callable[..., Any]:
    """The attention function ``name`` for ``module``: a registered one, or the model's own
    ``eager_attention_forward`` (eager is not registered globally)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name != "eager":
        fn: Callable[..., Any] = ALL_ATTENTION_FUNCTIONS[name]
        return fn
    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if eager is None:
        raise QuantfidError(f"no eager attention function for {type(module).__name__}")
    return cast(Callable[..., Any], eager)


def _f16kv_attention(inner_name: str) -> Callable[..., Any]:
    """An attention function that rounds keys and values to f16, then runs ``inner_name``."""

    def attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                  value: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        inner = _inner_attention(inner_name, module)
        return inner(module, query, _f16(key), _f16(value), *args, **kwargs)

    return attention


def _register_f16kv(inner: str) -> str:
    """Register (once) the f16-KV wrapper of attention ``inner``; returns its name."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import AttentionInterface

    name = _KV_PREFIX + inner
    if name not in AttentionInterface._global_mapping:
        mask = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(inner)
        if mask is None:
            raise QuantfidError(f"ggml-cpu numerics cannot wrap attention {inner!r}; load the "
                                "model with attn_implementation 'sdpa' or 'eager'")
        AttentionInterface.register(name, _f16kv_attention(inner))
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, cast(Callable[..., Any], mask))
    return name


class _SharedInput:
    """The last activation rounded per type: q/k/v (and gate/up) read the same tensor, so it
    is rounded once. Holds a strong reference, so an identity match is the same tensor."""

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None
        self.out: dict[str, Any] = {}

    def get(self, x: torch.Tensor, act: str) -> Any:
        if x is not self.x:
            self.x, self.out = x, {}
        if act not in self.out:
            self.out[act] = actquant.q8_1(x) if act == "q8_1" else actquant.round_activation(x, act)
        return self.out[act]

    def clear(self) -> None:
        self.x, self.out = None, {}


@dataclass
class NumericsHandle:
    """What :func:`apply_numerics` installed. ``types``: linear module name -> weight type of
    every patched linear; ``remove()`` restores the module (idempotent)."""

    numerics: str
    types: dict[str, str] = field(default_factory=dict)
    _hooks: list[Any] = field(default_factory=list, repr=False)
    _config: Any = field(default=None, repr=False)
    _attn: str | None = field(default=None, repr=False)
    _shared: _SharedInput = field(default_factory=_SharedInput, repr=False)

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self._config is not None:
            self._config._attn_implementation = self._attn
            self._config = None
        self._shared.clear()

    def __enter__(self) -> NumericsHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _linear_types(module: torch.nn.Module, types: dict[str, str]) -> dict[str, tuple[torch.nn.Linear, str]]:
    """Linear module name -> (module, weight type); a weight shared by two modules (the tied
    output head) takes the type of its first name, as :func:`model_shape` lists it."""
    first = {id(p): n for n, p in module.named_parameters()}
    out: dict[str, tuple[torch.nn.Linear, str]] = {}
    for name, mod in module.named_modules():
        if isinstance(mod, torch.nn.Linear):
            pname = first.get(id(mod.weight), f"{name}.weight")
            out[name] = (mod, types.get(pname, "F32"))
    return out


def _block_minima(weight: torch.Tensor) -> torch.Tensor:
    """Per-32-block minimum of a Q4_1/Q5_1 weight (out, in) -> (out, in / 32): the stored
    minimum m, which without an importance matrix is the block's smallest dequantized value."""
    w = weight.detach().to(torch.float32)
    return w.reshape(w.shape[0], -1, 32).amin(-1)


def _hook(shared: _SharedInput, act: str, minima: torch.Tensor | None) -> tuple[Any, Any]:
    """(pre-hook, forward hook or None) rounding a linear's input to ``act``."""
    corr_box: list[torch.Tensor] = []

    def pre(mod: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        out = shared.get(x, act)
        if act == "q8_1":
            xq, corr = out
            corr_box[:] = [corr]
        else:
            xq = out
        return (xq.to(x.dtype), *args[1:])

    def post(mod: torch.nn.Module, args: tuple[Any, ...], y: torch.Tensor) -> torch.Tensor:
        corr = corr_box.pop()                                            # (..., in/32)
        assert minima is not None
        return y + (corr @ minima.T).to(y.dtype)                         # (..., out)

    return pre, (post if act == "q8_1" else None)


def apply_numerics(module: torch.nn.Module, types: dict[str, str] | None,
                   numerics: str) -> NumericsHandle:
    """Make ``module`` compute with ``numerics`` (see the module docstring).

    types: HF parameter name -> weight scheme (``Recipe.type_map`` / ``QuantReport.types`` /
    :func:`gguf_types`); a linear whose weight is not listed (or None for all: the float
    reference) counts as F32. The module must hold float32 parameters for ``ggml-cpu``
    (llama.cpp computes in float32 on the CPU). Returns a handle; ``handle.remove()`` (or a
    ``with`` block) undoes everything.
    """
    if numerics not in NUMERICS:
        raise QuantfidError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
    handle = NumericsHandle(numerics)
    if numerics == "weights":
        return handle
    dtypes = {p.dtype for p in module.parameters()}
    if dtypes - {torch.float32}:
        raise QuantfidError("ggml-cpu numerics emulates llama.cpp's float32 CPU backend: load "
                            f"the model in float32 (it holds {sorted(map(str, dtypes))})")
    cfg = getattr(module, "config", None)
    inner = getattr(cfg, "_attn_implementation", None)
    if cfg is None or inner is None:
        raise QuantfidError("ggml-cpu numerics needs a transformers model (config with an "
                            "attention implementation)")
    base = inner[len(_KV_PREFIX):] if inner.startswith(_KV_PREFIX) else inner
    try:
        for name, (mod, scheme) in _linear_types(module, types or {}).items():
            act = actquant.vec_dot_type(scheme)
            if act == "f32":
                continue
            minima = _block_minima(mod.weight) if act == "q8_1" else None
            pre, post = _hook(handle._shared, act, minima)
            handle._hooks.append(mod.register_forward_pre_hook(pre))
            if post is not None:
                handle._hooks.append(mod.register_forward_hook(post))
            handle.types[name] = scheme
        handle._config, handle._attn = cfg, inner
        cfg._attn_implementation = _register_f16kv(base)
    except BaseException:
        handle.remove()
        raise
    return handle
