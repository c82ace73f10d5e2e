"""The torch (CUDA) reductions, run on CPU tensors, against the float64 numba kernels; what
crosses to the host. On a machine with CUDA the last test runs the real dispatch there."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quantfid.metrics import device
from quantfid.store.compact import METRIC_FIELDS, compact_metrics, compact_rows
from quantfid.store.full import full_metrics
from quantfid.store.rows import CompactRows

V = 4000
SETTINGS = {"mass": 1 - 1e-4, "cap": 48, "min_k": 10, "tail_samples": 16}
# float32 passes over V: the log-normaliser is good to ~1e-7 relative, which every
# per-token log-prob (and so KL, NLL) inherits as an absolute error
F32 = {"rtol": 1e-4, "atol": 1e-6}


def logits(seed: int, n: int = 40, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.geomspace(0.5, 12.0, n)[rng.permutation(n)][:, None]
    ref = (rng.standard_normal((n, V)) * scale).astype(np.float32)
    quant = (ref + noise * rng.standard_normal((n, V))).astype(np.float32)
    return ref, quant, rng.integers(0, V, n)


def test_compact_rows_torch_equal_numba_to_float32() -> None:
    ref, _, tgt = logits(0)
    tgt[3] = -1
    want = compact_rows(ref, tgt, rng=np.random.default_rng(1), **SETTINGS)
    res = device.compact_rows_torch(torch.from_numpy(ref), tgt, rng=np.random.default_rng(1),
                                    **SETTINGS)
    got = CompactRows(**res.arrays)
    # the adaptive k may differ only where the float64 cumulative mass is within float32
    # rounding of the target; not in this data
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.tail_counts, want.tail_counts)
    for f in ("logp", "log_tail", "target_logp"):
        np.testing.assert_allclose(getattr(got, f), getattr(want, f), **F32, err_msg=f)
    # a tail sample lands on another id only when its position is within rounding of a
    # boundary of the cumulative sum; the rest are the same ids with the same log-probs
    same = got.tail_ids == want.tail_ids
    assert same.mean() > 0.99 and len(same) > 100
    np.testing.assert_allclose(got.tail_logp[same], want.tail_logp[same], **F32)
    # host-bound bytes: the rows, int32 ids, float32 values; nothing of size V
    n, nnz, ns = len(got), len(got.ids), len(got.tail_ids)
    assert res.nbytes == n * (4 + 8 + 8 + 4) + nnz * 8 + ns * 8


def test_bfloat16_ties_rank_the_lower_id_first() -> None:
    """bfloat16 logits tie often (8-bit mantissa), also at the cap: the kept ids are the CPU's."""
    ref, _, tgt = logits(5)
    half = torch.from_numpy(ref).to(torch.bfloat16)
    x = half.float().numpy()
    at_cap = [np.sort(r)[-SETTINGS["cap"]] for r in x]
    assert sum(int((r == v).sum()) > 1 for r, v in zip(x, at_cap, strict=True)) > 10
    want = compact_rows(x, tgt, rng=np.random.default_rng(1), **SETTINGS)
    got = CompactRows(**device.compact_rows_torch(half, tgt, rng=np.random.default_rng(1),
                                                  **SETTINGS).arrays)
    np.testing.assert_array_equal(got.counts, want.counts)
    np.testing.assert_array_equal(got.ids, want.ids)
    vals, ids = device.top_exact(half.float(), 10)
    for i in range(len(x)):
        order = np.lexsort((np.arange(V), -x[i]))[:10]
        np.testing.assert_array_equal(ids[i].numpy(), order)
        np.testing.assert_array_equal(vals[i].numpy(), x[i, order])


@pytest.mark.parametrize("tail", ["sampled", "bucket"])
def test_compact_metrics_torch_equal_numba_to_float32(tail: str) -> None:
    ref, quant, tgt = logits(1)
    tgt[5] = -1
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(2), **SETTINGS)
    want = compact_metrics(rows, quant, tgt, tail=tail)
    half = torch.from_numpy(quant).to(torch.bfloat16)
    res = device.compact_metrics_torch(rows, half, tgt, sampled=tail == "sampled")
    from_half = compact_metrics(rows, half.float().numpy(), tgt, tail=tail)
    for k in METRIC_FIELDS:
        np.testing.assert_allclose(res.arrays[k], getattr(from_half, k), **F32, err_msg=k)
    np.testing.assert_array_equal(res.arrays["same_top1"], from_half.same_top1)
    assert not np.allclose(from_half.kld, want.kld, **F32)  # bf16 input is a real change
    assert res.nbytes == len(rows) * (8 * len(METRIC_FIELDS) + 1)  # per token: 73 bytes


def test_full_metrics_torch_equal_numba_to_float32() -> None:
    """A full store's rows are log-probs: every entry ~30 below the quant's logits, which a
    plain float32 difference would round at 2e-6."""
    ref, quant, tgt = logits(2)
    ref = (ref - np.log(np.exp(ref.astype(np.float64)).sum(1, keepdims=True))).astype(np.float32)
    quant += np.float32(12.0)
    want = full_metrics(ref, quant, tgt)
    res = device.full_metrics_torch(ref, torch.from_numpy(quant), tgt)
    for k, v in want.arrays().items():
        if k == "same_top1":
            np.testing.assert_array_equal(res.arrays[k], v)
        else:
            np.testing.assert_allclose(res.arrays[k], v, **F32, err_msg=k)
    assert res.nbytes == len(ref) * (8 * 9 + 1)
    core = device.full_metrics_torch(ref, torch.from_numpy(quant), None, extras=False)
    assert set(core.arrays) == {"kld", "rkld", "same_top1", "ref_top1_prob"}


def test_torch_path_names_non_finite_input() -> None:
    from quantfid.errors import QuantfidError

    ref, quant, tgt = logits(3, n=6)
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(0), **SETTINGS)
    quant[4, 17] = -np.inf
    with pytest.raises(QuantfidError, match=r"position 4 \(vocab index 17\)"):
        device.compact_metrics_torch(rows, torch.from_numpy(quant), tgt)
    with pytest.raises(QuantfidError, match=r"position 4 \(vocab index 17\)"):
        device.full_metrics_torch(ref, torch.from_numpy(quant), tgt)
    ref[2, 9] = np.nan
    with pytest.raises(QuantfidError, match=r"reference at token position 2 \(vocab index 9\)"):
        device.full_metrics_torch(ref, torch.from_numpy(quant), tgt)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_dispatch_matches_cpu() -> None:  # pragma: no cover - runs where CUDA exists
    ref, quant, tgt = logits(4)
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(0), **SETTINGS)
    on_gpu = compact_rows(torch.from_numpy(ref).cuda().half(), tgt,
                          rng=np.random.default_rng(0), **SETTINGS)
    assert len(on_gpu) == len(rows)
    a = compact_metrics(rows, quant, tgt)
    b = compact_metrics(rows, torch.from_numpy(quant).cuda(), tgt)
    c = full_metrics(ref, torch.from_numpy(quant).cuda(), tgt)
    for k in METRIC_FIELDS:
        np.testing.assert_allclose(getattr(b, k), getattr(a, k), **F32, err_msg=k)
    np.testing.assert_allclose(c.kld, full_metrics(ref, quant, tgt).kld, **F32)
