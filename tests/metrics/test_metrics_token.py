"""token_metrics against scipy and a plain numpy per-token loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax
from scipy.stats import entropy

from quantfid.errors import MismatchError, QuantfidError
from quantfid.metrics import token_metrics
from quantfid.metrics.kernel import _log1p_unit, fexp


def _pair(rng: np.random.Generator, t: int, v: int, noise: float = 0.3,
          dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    ref = rng.standard_normal((t, v)) * 3
    quant = ref + noise * rng.standard_normal((t, v)) + rng.standard_normal((t, 1))
    return ref.astype(dtype), quant.astype(dtype)


def _loop_reference(ref: np.ndarray, quant: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """A plain per-token loop in float64: softmax via scipy's log_softmax."""
    out: dict[str, list[float]] = {k: [] for k in ("kld", "rkld", "jsd", "nll_ref", "nll_q", "dp",
                                                   "same", "top1p")}
    for i in range(ref.shape[0]):
        lp = log_softmax(ref[i].astype(np.float64))
        lq = log_softmax(quant[i].astype(np.float64))
        p, q = np.exp(lp), np.exp(lq)
        out["kld"].append(entropy(p, q))
        out["rkld"].append(entropy(q, p))
        out["jsd"].append(jensenshannon(p, q) ** 2)  # natural log base: nats
        out["nll_ref"].append(-lp[targets[i]])
        out["nll_q"].append(-lq[targets[i]])
        out["dp"].append(q[targets[i]] - p[targets[i]])
        out["same"].append(float(np.argmax(ref[i]) == np.argmax(quant[i])))
        out["top1p"].append(p.max())
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("vocab", [1, 7, 513, 3000])
def test_matches_scipy_and_loop(vocab: int) -> None:
    rng = np.random.default_rng(vocab)
    ref, quant = _pair(rng, 23, vocab)
    targets = rng.integers(0, vocab, 23)
    tm = token_metrics(ref, quant, targets)
    want = _loop_reference(ref, quant, targets)
    assert tm.rkld is not None and tm.jsd is not None and tm.dp is not None
    assert tm.nll_ref is not None and tm.nll_q is not None
    np.testing.assert_allclose(tm.kld, want["kld"], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(tm.rkld, want["rkld"], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(tm.jsd, want["jsd"], rtol=1e-8, atol=1e-13)
    np.testing.assert_allclose(tm.nll_ref, want["nll_ref"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tm.nll_q, want["nll_q"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tm.dp, want["dp"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(tm.ref_top1_prob, want["top1p"], rtol=1e-12)
    np.testing.assert_array_equal(tm.same_top1, want["same"].astype(bool))
    assert tm.kld.dtype == np.float64 and tm.same_top1.dtype == np.bool_


def test_tiny_and_large_divergences() -> None:
    rng = np.random.default_rng(1)
    for noise in (1e-6, 1e-3, 3.0):
        ref, quant = _pair(rng, 9, 2000, noise=noise)
        tm = token_metrics(ref, quant)
        want = _loop_reference(ref, quant, np.zeros(9, dtype=int))
        # KL ~ noise^2 * 9 / 2: relative accuracy holds down to ~1e-11 nats
        np.testing.assert_allclose(tm.kld, want["kld"], rtol=1e-6, atol=1e-15)
        np.testing.assert_allclose(tm.rkld, want["rkld"], rtol=1e-6, atol=1e-15)
        assert tm.jsd is not None
        np.testing.assert_allclose(tm.jsd, want["jsd"], rtol=1e-5, atol=1e-15)


def test_identical_and_extreme_rows() -> None:
    ref = np.array([[0.0, 1.0, 2.0], [1000.0, -1000.0, 0.0], [5.0, 5.0, 5.0]])
    tm = token_metrics(ref, ref + 7.5, np.array([0, 1, 2]))
    np.testing.assert_allclose(tm.kld, 0.0, atol=1e-15)
    assert tm.jsd is not None and tm.nll_ref is not None
    np.testing.assert_allclose(tm.jsd, 0.0, atol=1e-15)
    # row 1: p(1) = e^-2000 underflows; its NLL is still exact from the log-softmax
    np.testing.assert_allclose(tm.nll_ref[1], 2000.0, rtol=1e-12)
    np.testing.assert_allclose(tm.ref_top1_prob, [np.exp(2) / np.exp([0, 1, 2]).sum(), 1.0, 1 / 3])
    assert list(tm.same_top1) == [True, True, True]  # ties: first index wins on both sides


def test_logits_and_logprobs_give_the_same() -> None:
    rng = np.random.default_rng(2)
    ref, quant = _pair(rng, 10, 300)
    t = rng.integers(0, 300, 10)
    a = token_metrics(ref, quant, t)
    b = token_metrics(log_softmax(ref, axis=1), log_softmax(quant, axis=1), t)
    for k, v in a.arrays().items():
        np.testing.assert_allclose(v, b.arrays()[k], rtol=1e-9, atol=1e-13, err_msg=k)


def test_topk_overlap_with_ties_matches_stable_sort() -> None:
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 4, (40, 12)).astype(np.float32)  # many ties
    quant = rng.integers(0, 4, (40, 12)).astype(np.float32)
    tm = token_metrics(ref, quant)
    for k, got in ((5, tm.top5_overlap), (10, tm.top10_overlap)):
        want = [len(set(np.argsort(-ref[i], kind="stable")[:k])
                    & set(np.argsort(-quant[i], kind="stable")[:k])) / k for i in range(40)]
        assert got is not None
        np.testing.assert_array_equal(got, want)
    small = token_metrics(ref[:, :3], quant[:, :3])  # V < k: overlap over all V entries
    assert small.top10_overlap is not None
    np.testing.assert_array_equal(small.top10_overlap, 1.0)


def test_chunking_does_not_change_results() -> None:
    rng = np.random.default_rng(4)
    ref, quant = _pair(rng, 50, 100, dtype=np.float32)
    t = rng.integers(0, 100, 50)
    a, b = token_metrics(ref, quant, t), token_metrics(ref, quant, t, chunk=7)
    for k, v in a.arrays().items():
        np.testing.assert_array_equal(v, b.arrays()[k], err_msg=k)


def test_float32_inputs_accumulate_in_float64() -> None:
    rng = np.random.default_rng(5)
    ref, quant = _pair(rng, 12, 5000, noise=1e-3, dtype=np.float32)
    t = rng.integers(0, 5000, 12)
    f32 = token_metrics(ref, quant, t)
    f64 = token_metrics(ref.astype(np.float64), quant.astype(np.float64), t)
    # same values once widened: float32 input loses nothing in the arithmetic
    for k, v in f32.arrays().items():
        np.testing.assert_allclose(v, f64.arrays()[k], rtol=1e-12, atol=1e-16, err_msg=k)
    mixed = token_metrics(ref, quant.astype(np.float64), t)
    for k, v in mixed.arrays().items():
        np.testing.assert_array_equal(v, f64.arrays()[k], err_msg=k)
    # a float32 computation (torch, float32 accumulation) is much further off than that
    lr = torch.log_softmax(torch.from_numpy(ref), -1)
    lq = torch.log_softmax(torch.from_numpy(quant), -1)
    kl32 = (lr.exp() * (lr - lq)).sum(-1).double().numpy()
    want = _loop_reference(ref, quant, t)["kld"]
    assert np.max(np.abs(f32.kld - want)) < 1e-12 < np.max(np.abs(kl32 - want))


def test_torch_and_numpy_inputs_equal() -> None:
    rng = np.random.default_rng(6)
    ref, quant = _pair(rng, 8, 64, dtype=np.float32)
    t = rng.integers(0, 64, 8)
    a = token_metrics(ref, quant, t)
    b = token_metrics(torch.from_numpy(ref), torch.from_numpy(quant), torch.from_numpy(t))
    for k, v in a.arrays().items():
        np.testing.assert_array_equal(v, b.arrays()[k], err_msg=k)
    # bfloat16 / float16 tensors are widened to float32 exactly
    rb, qb = torch.from_numpy(ref).bfloat16(), torch.from_numpy(quant).half()
    c = token_metrics(rb, qb, t)
    d = token_metrics(rb.float().numpy(), qb.float().numpy(), t)
    for k, v in c.arrays().items():
        np.testing.assert_array_equal(v, d.arrays()[k], err_msg=k)


def test_without_targets_and_extras() -> None:
    rng = np.random.default_rng(7)
    ref, quant = _pair(rng, 5, 20)
    tm = token_metrics(ref, quant, extras=False)
    assert tm.nll_ref is None and tm.nll_q is None and tm.dp is None
    assert tm.jsd is None and tm.top5_overlap is None and tm.rkld is not None
    assert len(tm) == 5
    assert len(token_metrics(ref[:0], quant[:0])) == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["ref", "quant"])
def test_non_finite_rejected_with_position(bad: float, which: str) -> None:
    rng = np.random.default_rng(8)
    ref, quant = _pair(rng, 300, 40, dtype=np.float32)
    target = ref if which == "ref" else quant
    target[270, 13] = bad
    target[290, 2] = bad  # only the first bad position is named
    with pytest.raises(QuantfidError, match=rf"in {which} logits at token position 270 \(vocab index 13\)"):
        token_metrics(ref, quant, chunk=256)


def test_overflowing_logits_rejected() -> None:
    ref = np.zeros((3, 4))
    quant = np.zeros((3, 4))
    ref[1, 0], quant[1, 1] = 1e308, -1e308
    with pytest.raises(QuantfidError, match="position 1 are too large"):
        token_metrics(ref, quant)


def test_shape_and_vocab_mismatch() -> None:
    a = np.zeros((4, 10))
    with pytest.raises(MismatchError, match="vocab size"):
        token_metrics(a, np.zeros((4, 11)))
    with pytest.raises(MismatchError, match="token count"):
        token_metrics(a, np.zeros((5, 10)))
    with pytest.raises(MismatchError, match="shape"):
        token_metrics(np.zeros(10), np.zeros(10))
    with pytest.raises(MismatchError, match="targets"):
        token_metrics(a, a, np.zeros(3, dtype=int))
    with pytest.raises(MismatchError, match="position 2"):
        token_metrics(a, a, np.array([0, 1, 10, 3]))


def test_exp_and_log1p_polynomials() -> None:
    xs = np.concatenate([-np.logspace(-12, np.log10(699.9), 1000), [0.0, -0.5, -1e-300, -700.0]])
    for x in xs:
        assert abs(fexp(float(x)) - np.exp(x)) <= 1e-15 * np.exp(x), x
    assert fexp(-700.5) == 0.0 and fexp(-np.inf) == 0.0
    for z in np.concatenate([np.linspace(0, 1, 300), np.logspace(-300, 0, 300)]):
        assert abs(_log1p_unit(float(z)) - np.log1p(z)) <= 4e-16 * np.log1p(z), z
