"""Per-token fidelity metrics between a reference P and a quant Q over a vocabulary.

`token_metrics(ref, quant, targets)` takes two (T, V) arrays (numpy or torch) of logits or
log-probabilities; each row is re-normalised with a log-softmax computed in float64 from the
given values (never softmax-then-log). KL(P||Q) (llama.cpp's direction), KL(Q||P) and
Jensen-Shannon are in nats. Rows are processed `chunk` at a time, so extra memory is
O(chunk x V) at most (only when the input must be converted: float16/bfloat16, torch on GPU,
non-contiguous) and O(T) for the results.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantfid.errors import MismatchError, QuantfidError
from quantfid.metrics import kernel
from quantfid.metrics.inputs import check_targets, raise_bad
from quantfid.metrics.types import TokenMetrics

DEFAULT_CHUNK = 256


def _shape(x: Any, name: str) -> tuple[int, int]:
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 2:
        raise MismatchError(f"{name} must be a (tokens, vocab) array, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _rows(x: Any, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi as a C-contiguous float32 or float64 numpy array (a view when possible)."""
    part = x[lo:hi]
    if not isinstance(part, np.ndarray):  # torch.Tensor (imported lazily by the caller)
        part = part.detach()
        if str(part.dtype) not in ("torch.float32", "torch.float64"):
            part = part.float()
        part = part.cpu().numpy()
    if part.dtype not in (np.float32, np.float64):
        if not np.issubdtype(part.dtype, np.floating):
            raise QuantfidError(f"logits must be floating point, got dtype {part.dtype}")
        part = part.astype(np.float32)
    return np.ascontiguousarray(part)


def _targets(targets: Any, n: int, vocab: int) -> np.ndarray:
    """(n,) int64 next-token ids (``quantfid.metrics.inputs.check_targets``); every one known
    here (None: no targets, the NLL-based metrics are left out)."""
    if targets is None:
        return np.full(n, -1, dtype=np.int64)
    t = check_targets(targets, n, vocab)
    if (t < 0).any():
        i = int(np.argmax(t < 0))
        raise MismatchError(f"targets: token id {int(t[i])} at position {i} is outside the "
                            f"vocabulary (size {vocab})")
    return t


def _raise_bad(ref_rows: np.ndarray, q_rows: np.ndarray, flags: np.ndarray, offset: int) -> None:
    """Name the first token position with a NaN/inf (the reference first within a row)."""
    i = int(np.argmax(flags != 0))
    ref_bad = not bool(np.isfinite(ref_rows[i]).all())
    q_bad = not bool(np.isfinite(q_rows[i]).all())
    what = "ref logits" if ref_bad else "quant logits" if q_bad else "logits"
    raise_bad(ref_rows if ref_bad else q_rows, flags, what, offset)


def token_metrics(ref: Any, quant: Any, targets: Any = None, *, extras: bool = True,
                  chunk: int = DEFAULT_CHUNK) -> TokenMetrics:
    """Per-token metrics of quant Q against reference P.

    ref, quant: (T, V) numpy arrays or torch tensors of logits or log-probs (any float dtype;
    float16/bfloat16 are widened to float32). targets: (T,) next-token ids, or None (then
    nll_ref, nll_q and dp are None). extras: also compute Jensen-Shannon and the top-5/top-10
    overlaps (separate passes; the fused kernel covers KL, reverse KL, NLLs, dp, same top-1 and
    the reference's top-1 probability). Raises MismatchError on a shape or vocab mismatch and
    QuantfidError naming the first token position with a NaN or infinity.
    """
    n, vocab = _shape(ref, "ref")
    n_q, vocab_q = _shape(quant, "quant")
    if (n, vocab) != (n_q, vocab_q):
        what = "vocab size" if vocab != vocab_q else "token count"
        raise MismatchError(f"ref and quant differ in {what}: ref {(n, vocab)}, quant {(n_q, vocab_q)}")
    if vocab < 1:
        raise MismatchError("vocab size must be at least 1")
    if chunk < 1:
        raise ValueError("chunk must be >= 1")
    tgt = _targets(targets, n, vocab)
    f64 = {k: np.empty(n, dtype=np.float64) for k in
           ("kld", "rkld", "nll_ref", "nll_q", "dp", "ref_top1_prob", "lse_ref", "lse_q")}
    same = np.empty(n, dtype=np.bool_)
    bad = np.zeros(n, dtype=np.int8)
    jsd = np.empty(n, dtype=np.float64) if extras else None
    top5 = np.empty(n, dtype=np.float64) if extras else None
    top10 = np.empty(n, dtype=np.float64) if extras else None
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        r = _rows(ref, lo, hi)
        q = _rows(quant, lo, hi)
        if r.dtype != q.dtype:  # one float64 kernel instead of compiling mixed signatures
            r, q = r.astype(np.float64), q.astype(np.float64)
        s = slice(lo, hi)
        kernel.fused_rows(r, q, tgt[s], f64["kld"][s], f64["rkld"][s], f64["nll_ref"][s],
                          f64["nll_q"][s], f64["dp"][s], same[s], f64["ref_top1_prob"][s],
                          f64["lse_ref"][s], f64["lse_q"][s], bad[s])
        if bad[s].any():
            _raise_bad(r, q, bad[s], lo)
        if jsd is not None and top5 is not None and top10 is not None:
            kernel.js_rows(r, q, f64["lse_ref"][s], f64["lse_q"][s], jsd[s])
            kernel.topk_overlap_rows(r, q, top5[s], top10[s])
    has_t = targets is not None
    return TokenMetrics(
        kld=f64["kld"], same_top1=same, ref_top1_prob=f64["ref_top1_prob"], rkld=f64["rkld"],
        jsd=jsd, nll_ref=f64["nll_ref"] if has_t else None, nll_q=f64["nll_q"] if has_t else None,
        dp=f64["dp"] if has_t else None, top5_overlap=top5, top10_overlap=top10)
