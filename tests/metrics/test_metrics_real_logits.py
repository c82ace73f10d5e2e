"""token_metrics on real logits of the embedded model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from quantfid.metrics import summarize, token_metrics

TEXT = ("The reference model runs once; every quantized model is compared against its stored "
        "log-probabilities, token by token, with the divergence measured in nats.")


@pytest.mark.slow
def test_real_logits_against_float64_torch() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    lm = load_hf(None, dtype="float32", device="cpu")
    ids = torch.tensor([lm.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        ref = lm.module(ids).logits[0, :-1].float()
        lm.module.to(torch.bfloat16)  # a crude "quant": bfloat16 weights and activations
        quant = lm.module(ids).logits[0, :-1].float()
    targets = ids[0, 1:]
    tm = token_metrics(ref, quant, targets)
    lr = torch.log_softmax(ref.double(), -1)
    lq = torch.log_softmax(quant.double(), -1)
    kl = (lr.exp() * (lr - lq)).sum(-1).numpy()
    t = targets.numpy()
    np.testing.assert_allclose(tm.kld, kl, rtol=1e-9, atol=1e-13)
    assert tm.nll_q is not None and tm.nll_ref is not None
    np.testing.assert_allclose(tm.nll_ref, -lr.numpy()[np.arange(len(t)), t], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tm.nll_q, -lq.numpy()[np.arange(len(t)), t], rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(tm.same_top1, (ref.argmax(-1) == quant.argmax(-1)).numpy())
    st = summarize(tm, n_boot=200, rng=np.random.default_rng(0))
    assert st.kld_mean is not None and 0 < st.kld_mean < 1.0
    assert st.same_top1 is not None and st.same_top1 > 0.5
