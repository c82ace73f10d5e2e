"""The embedded default model: its shapes, and Q4_1 of its Q4_1-derived reference is near exact."""

from __future__ import annotations

import copy

import pytest
import torch

from quantfid.quantize import get_recipe, model_shape, quantize_model

from .conftest import smollm_shape


@pytest.mark.slow
def test_config_shapes_equal_the_hand_written_ones() -> None:
    from quantfid.quantize.reference import reference_shape

    s = reference_shape(None)       # config only, meta device: no weights loaded
    assert s == smollm_shape()


@pytest.mark.slow
def test_q4_1_of_the_embedded_reference_is_near_lossless() -> None:
    from quantfid.backends.hf import load_hf

    lm = load_hf(None, role="reference")
    ref = lm.module
    assert model_shape(ref) == smollm_shape()
    q = copy.deepcopy(ref)
    rep = quantize_model(q, get_recipe("Q4_1"), progress=False)
    assert rep.types["model.embed_tokens.weight"] == "Q8_0"
    worst = 0.0
    for (name, a), b in zip(ref.named_parameters(), q.parameters(), strict=True):
        rel = float((a - b).detach().abs().max() / a.detach().abs().max().clamp_min(1e-12))
        worst = max(worst, rel)
        assert rel < 1e-3, name
    ids = torch.tensor([[1, 504, 3458, 314, 4649, 28, 2683, 314, 3926, 30]])
    with torch.no_grad():
        lp_r = torch.log_softmax(ref(ids).logits.double(), -1)
        lp_q = torch.log_softmax(q(ids).logits.double(), -1)
    kl = float((lp_r.exp() * (lp_r - lp_q)).sum(-1).mean())
    assert kl < 1e-4, (kl, worst)
