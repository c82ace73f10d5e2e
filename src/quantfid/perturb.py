"""Perturbed numerics for the noise floor: the reference against itself, rounded.

``bf16-layers`` (as exllamav3's qbench measures its floor): every decoder layer's output
hidden states are rounded to bfloat16 (round to nearest even) and cast back, so the model
computes as before but carries a bf16 rounding error per layer. KL(P_ref || P_perturbed) of
this twin is the divergence that numerics alone produce: below it, differences between quants
are rounding, not quantization.
"""

from __future__ import annotations

from typing import Any

import torch

from quantfid.errors import QuantfidError

PERTURBATIONS = ("bf16-layers",)


def _round(x: Any) -> Any:
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(torch.bfloat16).to(x.dtype)
    if isinstance(x, tuple) and x:
        return (_round(x[0]), *x[1:])
    return x


def decoder_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder layers of a transformers causal LM (the base model's ``layers``)."""
    body: Any = getattr(module, getattr(module, "base_model_prefix", ""), module)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise QuantfidError(f"cannot find the decoder layers of {type(module).__name__} to "
                            "perturb (the noise floor needs a transformers causal LM)")
    return list(layers)


class Perturbation:
    """Forward hooks on every decoder layer; ``remove()`` takes them off."""

    def __init__(self, module: torch.nn.Module, kind: str = "bf16-layers") -> None:
        if kind not in PERTURBATIONS:
            raise QuantfidError(f"unknown perturbation {kind!r}; choose one of {PERTURBATIONS}")
        self.handles = [layer.register_forward_hook(lambda _m, _i, out: _round(out))
                        for layer in decoder_layers(module)]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
