"""Fused numba kernels over (T, V) rows of logits or log-probabilities.

Every row is re-normalised here (log-softmax), so logits and log-probs give the same result.
All sums are accumulated in float64; exp() is a vectorisable float64 polynomial (`fexp`,
relative error < 1e-15, checked in tests against numpy), so float32 inputs are handled with
float64 precision once loaded (a float32 input value is exact in float64). Compare a float32
log-softmax (torch): on V = 49,152 rows with KL ~ 5e-7 nats its KL is off by up to 120 %,
ours by 6e-9 (relative).

Per row, with r = reference row, q = quant row, t = r - max(r), u = q - max(q), d = t - u,
Zr = sum exp(t), Zq = sum exp(u), so ln p(v) = t(v) - ln Zr and ln q(v) = u(v) - ln Zq:

    KL(P||Q)  = sum_v p(v) (ln p(v) - ln q(v)) = (sum_v e^t d) / Zr - ln Zr + ln Zq
    KL(Q||P)  = -(sum_v e^u d) / Zq + ln Zr - ln Zq
    p_ref top-1 = 1 / Zr,  nll = ln Z - t(target)

Two passes over each row pair (max, then the exp sums, which also detect NaN/inf: a non-finite
input makes the sums non-finite); a row pair of V = 151,936 float32 values (1.2 MB) stays in
L2 between them. Rows run in parallel (numba prange) with no per-row buffers: memory is
O(rows) for the outputs. Jensen-Shannon and the top-k overlaps are separate passes.
Divergences are clamped at 0 (they are >= 0 mathematically; rounding can give -1e-17).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

# fast-math flags without nnan/ninf: NaN/inf must propagate into the sums (that is how
# non-finite inputs are detected), but reductions may be reassociated (vectorised).
_FM = {"reassoc", "nsz", "contract", "arcp"}

# numba's on-disk cache is off unless QUANTFID_NUMBA_CACHE=1: a kernel loaded from the cache can
# differ in the last bits from the same kernel compiled in-process (a fast-math callee is
# re-optimised inside its caller's cached object code), so the process that compiled first and
# the ones that loaded its cache would disagree. Compiling in every process costs ~10 s.
CACHE = os.environ.get("QUANTFID_NUMBA_CACHE", "") == "1"

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split into a high part with trailing zero bits ...
_LN2_LO = 1.9082149292705877e-10  # ... and the rest (Cody-Waite range reduction)
_LN2 = 0.6931471805599453
_EXP_MIN = -700.0  # exp(x) for x below this is taken as 0 (e^-700 ~ 1e-304)


def _bitcast_i64_f64(typingctx: Any, x: Any) -> tuple[Any, Any]:
    """Reinterpret the bits of an int64 as a float64 (an LLVM bitcast, so loops vectorise)."""
    sig = types.float64(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


_i64_as_f64: Any = intrinsic(_bitcast_i64_f64)


@njit(fastmath={"nsz", "arcp", "contract"}, cache=CACHE, inline="always")  # no reassoc: keeps ln2 split
def fexp(x: float) -> float:
    """exp(x) for x <= 0 in float64 (relative error < 1e-15); 0 for x < -700. Vectorisable."""
    xc = x if x > _EXP_MIN else _EXP_MIN
    ki = np.int64(xc * _LOG2E - 0.5)  # round(xc / ln2) for xc <= 0 (trunc toward zero)
    kf = np.float64(ki)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO  # |r| <= ln2 / 2
    p = 1.0 / 479001600  # Taylor series to degree 12, Horner form (error < 2e-16 here)
    p = 1.0 / 39916800 + r * p
    p = 1.0 / 3628800 + r * p
    p = 1.0 / 362880 + r * p
    p = 1.0 / 40320 + r * p
    p = 1.0 / 5040 + r * p
    p = 1.0 / 720 + r * p
    p = 1.0 / 120 + r * p
    p = 1.0 / 24 + r * p
    p = 1.0 / 6 + r * p
    p = 0.5 + r * p
    p = 1.0 + r * p
    p = 1.0 + r * p
    e = p * _i64_as_f64((ki + 1023) << 52)
    return e if x >= _EXP_MIN else 0.0


@njit(fastmath={"nsz", "arcp", "contract"}, cache=CACHE, inline="always", error_model="numpy")
def _log1p_unit(z: float) -> float:
    """ln(1 + z) for 0 <= z <= 1: atanh series in s = z / (2 + z) <= 1/3 (error < 1e-16)."""
    s = z / (2.0 + z)
    s2 = s * s
    p = 1.0 / 31
    p = 1.0 / 29 + s2 * p
    p = 1.0 / 27 + s2 * p
    p = 1.0 / 25 + s2 * p
    p = 1.0 / 23 + s2 * p
    p = 1.0 / 21 + s2 * p
    p = 1.0 / 19 + s2 * p
    p = 1.0 / 17 + s2 * p
    p = 1.0 / 15 + s2 * p
    p = 1.0 / 13 + s2 * p
    p = 1.0 / 11 + s2 * p
    p = 1.0 / 9 + s2 * p
    p = 1.0 / 7 + s2 * p
    p = 1.0 / 5 + s2 * p
    p = 1.0 / 3 + s2 * p
    return 2.0 * s * (1.0 + s2 * p)


@njit(fastmath=True, cache=CACHE)
def _row_max(x: np.ndarray) -> float:
    """max(x) with 8 independent accumulators (vectorises). Unspecified if x has NaN: the
    caller detects non-finite input from its sums."""
    n = x.shape[0]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = np.float64(x[0])
    n8 = n // 8 * 8
    for i in range(0, n8, 8):
        a0 = max(a0, np.float64(x[i]))
        a1 = max(a1, np.float64(x[i + 1]))
        a2 = max(a2, np.float64(x[i + 2]))
        a3 = max(a3, np.float64(x[i + 3]))
        a4 = max(a4, np.float64(x[i + 4]))
        a5 = max(a5, np.float64(x[i + 5]))
        a6 = max(a6, np.float64(x[i + 6]))
        a7 = max(a7, np.float64(x[i + 7]))
    m = max(max(max(a0, a1), max(a2, a3)), max(max(a4, a5), max(a6, a7)))
    for i in range(n8, n):
        m = max(m, np.float64(x[i]))
    return m


@njit(cache=CACHE)
def _first_index_of(x: np.ndarray, value: float) -> int:
    for i in range(x.shape[0]):
        if x[i] == value:
            return i
    return 0


@njit(fastmath=_FM, cache=CACHE, error_model="numpy")
def _exp_sums(r: np.ndarray, q: np.ndarray, mr: float, mq: float
              ) -> tuple[float, float, float, float]:
    """(Zr, Zq, sum e^t d, sum e^u d) for one row pair, in float64."""
    zr = 0.0
    zq = 0.0
    sr = 0.0
    sq = 0.0
    for i in range(r.shape[0]):
        t = np.float64(r[i]) - mr
        u = np.float64(q[i]) - mq
        w = fexp(t)
        v = fexp(u)
        d = t - u
        zr += w
        zq += v
        sr += w * d
        sq += v * d
    return zr, zq, sr, sq


@njit(parallel=True, cache=CACHE)
def fused_rows(ref: np.ndarray, quant: np.ndarray, targets: np.ndarray,
               kld: np.ndarray, rkld: np.ndarray, nll_ref: np.ndarray, nll_q: np.ndarray,
               dp: np.ndarray, same_top1: np.ndarray, ref_top1_prob: np.ndarray,
               lse_ref: np.ndarray, lse_q: np.ndarray, bad: np.ndarray) -> None:
    """Core metrics for every row, in parallel over rows; results written into the outputs.

    targets[i] < 0 means no next token (nll_*, dp set to NaN). lse_* receive max + ln Z
    (the log-normaliser, so ln p(v) = x(v) - lse) for the JS kernel. bad[i] = 1 when the row
    pair has a NaN or an infinity (the other outputs of that row are then meaningless).
    """
    n_rows = ref.shape[0]
    for i in prange(n_rows):
        r = ref[i]
        q = quant[i]
        mr = _row_max(r)
        mq = _row_max(q)
        zr, zq, sr, sq = _exp_sums(r, q, mr, mq)
        if not math.isfinite(zr + zq + sr + sq + mr + mq):
            bad[i] = 1
            continue
        bad[i] = 0
        lzr = math.log(zr)
        lzq = math.log(zq)
        kld[i] = max(sr / zr - lzr + lzq, 0.0)
        rkld[i] = max(-sq / zq + lzr - lzq, 0.0)
        ref_top1_prob[i] = 1.0 / zr
        lse_ref[i] = mr + lzr
        lse_q[i] = mq + lzq
        same_top1[i] = _first_index_of(r, mr) == _first_index_of(q, mq)
        tok = targets[i]
        if tok >= 0:
            a = lzr - (np.float64(r[tok]) - mr)
            b = lzq - (np.float64(q[tok]) - mq)
            nll_ref[i] = a
            nll_q[i] = b
            dp[i] = math.exp(-b) - math.exp(-a)
        else:
            nll_ref[i] = np.nan
            nll_q[i] = np.nan
            dp[i] = np.nan


@njit(fastmath=_FM, cache=CACHE, error_model="numpy")
def _js_row(r: np.ndarray, q: np.ndarray, lse_r: float, lse_q: float) -> float:
    """JS = (KL(P||M) + KL(Q||M)) / 2 with M = (P + Q) / 2, in nats, where
    ln m = max(lp, lq) + ln(1 + e^-|lp - lq|) - ln 2."""
    acc = 0.0
    for i in range(r.shape[0]):
        lp = np.float64(r[i]) - lse_r
        lq = np.float64(q[i]) - lse_q
        lm = max(lp, lq) + _log1p_unit(fexp(-abs(lp - lq))) - _LN2
        acc += fexp(lp) * (lp - lm) + fexp(lq) * (lq - lm)
    return max(0.5 * acc, 0.0)


@njit(parallel=True, cache=CACHE)
def js_rows(ref: np.ndarray, quant: np.ndarray, lse_ref: np.ndarray, lse_q: np.ndarray,
            out: np.ndarray) -> None:
    """Jensen-Shannon divergence (nats) per row, given the log-normalisers from fused_rows."""
    for i in prange(ref.shape[0]):
        out[i] = _js_row(ref[i], quant[i], lse_ref[i], lse_q[i])


@njit(cache=CACHE)
def _topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, ordered by (value descending, index ascending)."""
    vals = np.empty(k, dtype=np.float64)
    idx = np.empty(k, dtype=np.int64)
    n_fill = min(k, x.shape[0])
    cnt = 0
    for i in range(x.shape[0]):
        v = np.float64(x[i])
        if cnt == n_fill and v <= vals[n_fill - 1]:
            continue  # the common case: one compare per element
        # insert after any equal values (stable: the lower index wins a tie)
        pos = cnt if cnt < n_fill else n_fill - 1
        while pos > 0 and vals[pos - 1] < v:
            vals[pos] = vals[pos - 1]
            idx[pos] = idx[pos - 1]
            pos -= 1
        vals[pos] = v
        idx[pos] = i
        if cnt < n_fill:
            cnt += 1
    return idx[:n_fill]


@njit(parallel=True, cache=CACHE)
def topk_overlap_rows(ref: np.ndarray, quant: np.ndarray, out5: np.ndarray,
                      out10: np.ndarray) -> None:
    """|topk(ref) & topk(quant)| / k for k = 5 and 10, per row (ties: lower index first)."""
    for i in prange(ref.shape[0]):
        a = _topk_indices(ref[i], 10)
        b = _topk_indices(quant[i], 10)
        k10 = a.shape[0]
        k5 = min(5, k10)
        c5 = 0
        c10 = 0
        for x in range(k10):
            for y in range(k10):
                if a[x] == b[y]:
                    c10 += 1
                    if x < k5 and y < k5:
                        c5 += 1
        out5[i] = c5 / k5
        out10[i] = c10 / k10
