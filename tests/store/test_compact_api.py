"""compact_rows / compact_metrics (the numba kernels) against the original numpy implementation,
the writer's two entry points, the reader's rows, chunking invariance, errors, memory."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.store.compact_oracle import oracle_metrics, oracle_metrics_chunked, oracle_rows

from quantfid.errors import MismatchError, QuantfidError
from quantfid.store.compact import (
    METRIC_FIELDS,
    CompactStore,
    CompactStoreWriter,
    compact_metrics,
    compact_rows,
)
from quantfid.store.rows import CompactRows

V, CTX = 3000, 48  # scoring "all": 47 scored positions per window
ROW_FIELDS = ("counts", "ids", "logp", "log_tail", "target_logp", "tail_counts", "tail_ids",
              "tail_logp")
SETTINGS = {"mass": 1 - 1e-4, "cap": 64, "min_k": 10, "tail_samples": 16}


def logits(seed: int, n: int, vocab: int = V, noise: float = 0.2
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (ref, quant) logits whose rows range from peaked (the mass target is reached
    below the cap) to flat (the cap binds and the tail is sampled), and next-token ids."""
    rng = np.random.default_rng(seed)
    scale = np.geomspace(0.5, 12.0, n)[rng.permutation(n)][:, None]
    ref = (rng.standard_normal((n, vocab)) * scale).astype(np.float32)
    quant = (ref + noise * rng.standard_normal((n, vocab))).astype(np.float32)
    return ref, quant, rng.integers(0, vocab, n)


def stored(rows: CompactRows) -> CompactRows:
    """The rows as a float32 store holds them."""
    f = {k: getattr(rows, k) for k in ROW_FIELDS}
    for k in ("logp", "log_tail", "target_logp", "tail_logp"):
        f[k] = f[k].astype(np.float32)
    return CompactRows(**f)


def test_rows_match_original_writer() -> None:
    ref, _, tgt = logits(0, 150)
    new = compact_rows(ref, tgt, rng=np.random.default_rng(5), **SETTINGS)
    old = oracle_rows(ref, tgt, rng=np.random.default_rng(5), **SETTINGS)
    assert 10 < new.counts.mean() < 64 and 0 < (new.tail_counts > 0).mean() < 1  # both regimes
    for f in ("counts", "ids", "tail_counts", "tail_ids"):
        np.testing.assert_array_equal(getattr(new, f), getattr(old, f), err_msg=f)
    for f in ("logp", "log_tail", "target_logp", "tail_logp"):  # float64 log-softmax both
        np.testing.assert_allclose(getattr(new, f), getattr(old, f), rtol=1e-12, atol=1e-12,
                                   err_msg=f)


@pytest.mark.parametrize("tail", ["sampled", "bucket"])
def test_metrics_match_original_comparison(tail: str) -> None:
    """Every field to 1e-9 relative; absolute 1e-13 for tiny values (a peaked row's KL of
    ~1e-7 nats is a sum of terms ~1e-2 whose float64 rounding, 1e-15 relative, depends on
    the summation order of the log-normaliser: numpy's pairwise sum vs our vector lanes)."""
    ref, quant, tgt = logits(1, 130)
    rows = stored(compact_rows(ref, tgt, rng=np.random.default_rng(2), **SETTINGS))
    tm = compact_metrics(rows, quant, tgt, tail=tail)
    want = oracle_metrics_chunked(rows, quant, tgt, sampled=tail == "sampled")
    for k in METRIC_FIELDS:
        np.testing.assert_allclose(getattr(tm, k), want[k], rtol=1e-9, atol=1e-13, err_msg=k)
    np.testing.assert_array_equal(tm.same_top1, want["same_top1"])
    assert tm.kld.mean() > 1e-3 and (tm.same_top1.mean() < 1)  # not a trivial comparison


def test_float64_and_torch_inputs_give_the_same_numbers() -> None:
    ref, quant, tgt = logits(2, 20)
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(0), **SETTINGS)
    again = compact_rows(torch.from_numpy(ref), torch.from_numpy(tgt),
                         rng=np.random.default_rng(0), **SETTINGS)
    wide = compact_rows(ref.astype(np.float64), tgt, rng=np.random.default_rng(0), **SETTINGS)
    # float32 values are exact in float64, so a float64 input is the same arithmetic; but
    # the float32 and float64 kernels are separate compilations, whose reassociated sums may
    # round differently in the last bit (e.g. one loaded from numba's cache, one fresh)
    for f in ROW_FIELDS:
        np.testing.assert_array_equal(getattr(again, f), getattr(rows, f), err_msg=f)
        np.testing.assert_allclose(getattr(wide, f), getattr(rows, f), rtol=1e-14, atol=1e-14,
                                   err_msg=f)
    a = compact_metrics(rows, quant, tgt)
    b = compact_metrics(rows, torch.from_numpy(quant.astype(np.float64)), tgt)
    half = torch.from_numpy(quant).to(torch.bfloat16)
    c = compact_metrics(rows, half, tgt)
    d = compact_metrics(rows, half.float().numpy(), tgt)
    for k, v in a.arrays().items():
        np.testing.assert_allclose(getattr(b, k), v, rtol=1e-12, atol=1e-15, err_msg=k)
        np.testing.assert_array_equal(getattr(c, k), getattr(d, k), err_msg=k)
    assert not np.array_equal(c.kld, a.kld)  # bfloat16 rounding is visible


def test_chunks_equal_the_whole() -> None:
    """Rows drawn chunk by chunk from one rng, and metrics chunk by chunk, equal the whole."""
    ref, quant, tgt = logits(3, 60)
    whole = compact_rows(ref, tgt, rng=np.random.default_rng(9), **SETTINGS)
    rng = np.random.default_rng(9)
    cuts = [0, 7, 8, 31, 60]
    parts = [compact_rows(ref[a:b], tgt[a:b], rng=rng, **SETTINGS)
             for a, b in itertools.pairwise(cuts)]
    joined = CompactRows.concat(parts)
    for f in ROW_FIELDS:
        np.testing.assert_array_equal(getattr(joined, f), getattr(whole, f), err_msg=f)
    tm = compact_metrics(whole, quant, tgt)
    chunks = [compact_metrics(whole.slice(a, b), quant[a:b], tgt[a:b])
              for a, b in itertools.pairwise(cuts)]
    for k, v in tm.arrays().items():
        np.testing.assert_array_equal(np.concatenate([getattr(c, k) for c in chunks]), v)


def _writer(path: Path, vocab: int = V) -> CompactStoreWriter:
    return CompactStoreWriter(path, model_id="m", tokenizer_id="t", vocab_size=vocab, ctx=CTX,
                              scoring="all", rng=np.random.default_rng(4), **SETTINGS)


def test_append_and_append_rows_write_the_same_bytes(tmp_path: Path) -> None:
    ref, quant, _ = logits(4, 2 * (CTX - 1))
    ref, quant = ref.reshape(2, CTX - 1, V), quant.reshape(2, CTX - 1, V)
    toks = np.random.default_rng(0).integers(0, V, (2, CTX))
    a, b = _writer(tmp_path / "a"), _writer(tmp_path / "b")
    rng = np.random.default_rng(4)
    for w in range(2):
        a.append(torch.from_numpy(ref[w]), toks[w])
        rows = compact_rows(ref[w], toks[w, 1:], rng=rng, **b.settings())
        b.append_rows(rows, toks[w])
    sa, sb = a.close(), b.close()
    for f in sorted(p.name for p in (tmp_path / "a").iterdir()):
        if f != "meta.json":
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    back = sa.rows(1)
    for f in ROW_FIELDS:  # what was appended, as stored (float32)
        np.testing.assert_array_equal(getattr(back, f), getattr(stored(rows), f), err_msg=f)
    part = sb.rows(1, 5, 30)
    for f in ROW_FIELDS:
        np.testing.assert_array_equal(getattr(part, f), getattr(back.slice(5, 30), f))
    tm = sa.metrics_against(1, quant[1])
    want = oracle_metrics(back, quant[1], toks[1, 1:])
    np.testing.assert_allclose(tm.kld, want["kld"], rtol=1e-9, atol=1e-13)
    with pytest.raises(MismatchError, match="outside"):
        sa.rows(0, 5, CTX)


def test_writer_refuses_bad_rows(tmp_path: Path) -> None:
    ref, _, _ = logits(5, CTX - 1)
    toks = np.zeros(CTX, np.int64)
    rows = compact_rows(ref, toks[1:], rng=np.random.default_rng(0), **SETTINGS)
    with _writer(tmp_path / "s") as w:
        with pytest.raises(MismatchError, match="compact rows"):
            w.append_rows(rows.slice(0, 10), toks)
        with pytest.raises(MismatchError, match="outside"):
            _writer(tmp_path / "small", vocab=100).append_rows(rows, toks)
        with pytest.raises(MismatchError, match="token id outside"):
            w.append_rows(rows, np.full(CTX, V))
        with pytest.raises(MismatchError, match="expected shape"):
            w.append(ref[:-1], toks)
        bad = ref.copy()
        bad[3, 7] = np.nan
        with pytest.raises(QuantfidError, match=r"^window 0: .* position 3 \(vocab index 7\)"):
            w.append(bad, toks)
        w.append_rows(rows, toks)
    assert CompactStore(tmp_path / "s").n_windows == 1


def test_unknown_targets_and_bad_input() -> None:
    ref, quant, tgt = logits(6, 12)
    tgt[[2, 7]] = -1
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(0), **SETTINGS)
    assert np.isnan(rows.target_logp[[2, 7]]).all() and np.isfinite(np.delete(
        rows.target_logp, [2, 7])).all()
    tm = compact_metrics(rows, quant, tgt)
    assert tm.nll_q is not None and tm.dp is not None and tm.nll_ref is not None
    for arr in (tm.nll_q, tm.dp, tm.nll_ref):
        assert np.isnan(arr[[2, 7]]).all() and np.isfinite(np.delete(arr, [2, 7])).all()
    for bad in (np.nan, np.inf, -np.inf):
        x = quant.copy()
        x[4, 123] = bad
        with pytest.raises(QuantfidError, match=r"position 4 \(vocab index 123\)"):
            compact_metrics(rows, x, tgt)
        with pytest.raises(QuantfidError, match=r"position 4 \(vocab index 123\)"):
            compact_rows(x, tgt, rng=np.random.default_rng(0))
    with pytest.raises(MismatchError, match=r"token id 3000 at position 1"):
        compact_metrics(rows, quant, np.r_[0, V, tgt[2:]])
    with pytest.raises(MismatchError, match="reference rows"):
        compact_metrics(rows.slice(0, 5), quant, tgt)
    with pytest.raises(MismatchError, match="vocabulary"):
        compact_metrics(rows, quant[:, :100], tgt)
    with pytest.raises(MismatchError, match="tail must be"):
        compact_metrics(rows, quant, tgt, tail="none")
    with pytest.raises(MismatchError, match="mass target"):
        compact_rows(ref, tgt, mass=0.0, rng=np.random.default_rng(0))


def test_few_kept_ids_compare_their_first_ones() -> None:
    """min_k < 10: the top-k overlap of a row uses kk = min(k, its count), per row."""
    ref, quant, tgt = logits(7, 40)
    rows = compact_rows(ref, tgt, mass=0.5, cap=64, min_k=1, tail_samples=4,
                        rng=np.random.default_rng(0))
    assert rows.counts.min() < 5 and rows.counts.max() > 10
    tm = compact_metrics(rows, quant, tgt)
    o = rows.offsets
    for i in range(len(rows)):
        q_order = np.lexsort((np.arange(V), -quant[i].astype(np.float64)))
        for k, got in ((5, tm.top5_overlap), (10, tm.top10_overlap)):
            kk = min(k, int(rows.counts[i]))
            inter = np.intersect1d(rows.ids[o[i]:o[i] + kk], q_order[:kk]).size
            assert got is not None and got[i] == inter / kk


def _peak_bytes(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_not_a_float64_copy_of_the_chunk() -> None:
    """Host allocations stay well under one float64 (P, V) copy (the original made several)."""
    ref, quant, tgt = logits(8, 64, vocab=20000)
    rows = compact_rows(ref, tgt, rng=np.random.default_rng(0), **SETTINGS)
    compact_metrics(rows, quant, tgt)  # compiled before measuring
    one_copy = ref.size * 8
    assert _peak_bytes(lambda: oracle_metrics(rows, quant, tgt)) > one_copy  # it sees numpy
    assert _peak_bytes(lambda: compact_rows(ref, tgt, rng=np.random.default_rng(0),
                                            **SETTINGS)) < 0.25 * one_copy
    assert _peak_bytes(lambda: compact_metrics(rows, quant, tgt)) < 0.25 * one_copy
