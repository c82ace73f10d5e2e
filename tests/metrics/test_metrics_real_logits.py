"""token_metrics and the compact reductions on real logits of the embedded model (slow: loads
SmolLM2-135M once for the module)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tests.store.compact_oracle import oracle_metrics, oracle_rows

from quantfid.metrics import device, summarize, token_metrics
from quantfid.store.compact import (
    DEFAULT_CAP,
    DEFAULT_MASS,
    DEFAULT_MIN_K,
    DEFAULT_TAIL_SAMPLES,
    METRIC_FIELDS,
    compact_metrics,
    compact_rows,
)

TEXT = ("The reference model runs once; every quantized model is compared against its stored "
        "log-probabilities, token by token, with the divergence measured in nats.")
SETTINGS = {"mass": DEFAULT_MASS, "cap": DEFAULT_CAP, "min_k": DEFAULT_MIN_K,
            "tail_samples": DEFAULT_TAIL_SAMPLES}


@pytest.fixture(scope="module")
def real() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reference logits, crude-quant logits (bfloat16 weights and activations), targets)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    lm = load_hf(None, dtype="float32", device="cpu")
    ids = torch.tensor([lm.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        ref = lm.module(ids).logits[0, :-1].float()
        lm.module.to(torch.bfloat16)
        quant = lm.module(ids).logits[0, :-1].float()
    return ref, quant, ids[0, 1:]


@pytest.mark.slow
def test_real_logits_against_float64_torch(
        real: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    ref, quant, targets = real
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


@pytest.mark.slow
def test_real_logits_compact_paths(real: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    """The kernels against the original numpy code, the torch (CUDA) code against the kernels,
    and logits vs torch's float32 log-softmax as input, on real logits (V = 49152)."""
    ref, quant, targets = real
    t = targets.numpy()
    rows = compact_rows(ref, t, rng=np.random.default_rng(0), **SETTINGS)
    old = oracle_rows(ref.numpy(), t, rng=np.random.default_rng(0), **SETTINGS)
    np.testing.assert_array_equal(rows.ids, old.ids)
    np.testing.assert_array_equal(rows.tail_ids, old.tail_ids)
    assert rows.counts.min() == DEFAULT_CAP and rows.tail_counts.min() > 0  # SmolLM2: flat
    tm = compact_metrics(rows, quant, t)
    want = oracle_metrics(rows, quant.numpy(), t)
    for k in METRIC_FIELDS[:-2]:
        np.testing.assert_allclose(getattr(tm, k), want[k], rtol=1e-9, atol=1e-13, err_msg=k)
    # top-k overlaps: bfloat16 activations make ties in the quant's logits at the k-th place,
    # which the original left to argpartition; ours go to the lowest id (plain numpy here)
    q = quant.numpy()
    for i in range(len(t)):
        order = np.lexsort((np.arange(q.shape[1]), -q[i].astype(np.float64)))
        ref10 = rows.ids[rows.offsets[i]:rows.offsets[i] + 10]
        for k, got in ((5, tm.top5_overlap), (10, tm.top10_overlap)):
            assert got is not None and got[i] == np.intersect1d(ref10[:k], order[:k]).size / k
    on_dev = device.compact_metrics_torch(rows, quant.to(torch.bfloat16), t).arrays
    cpu_bf16 = compact_metrics(rows, quant.to(torch.bfloat16), t)
    np.testing.assert_allclose(on_dev["kld"], cpu_bf16.kld, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(on_dev["top10_overlap"], cpu_bf16.top10_overlap)
    # the path before: torch's float32 log-softmax first, re-normalised in float64 here
    rows32 = compact_rows(torch.log_softmax(ref, -1), t, rng=np.random.default_rng(0),
                          **SETTINGS)
    tm32 = compact_metrics(rows32, torch.log_softmax(quant, -1), t)
    assert abs(tm32.kld.mean() / tm.kld.mean() - 1) < 1e-4
