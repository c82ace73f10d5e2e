"""llama.cpp's ``--kl-divergence-base`` file: read, write, and statistics computed its way.

Layout (all little-endian, as ``llama-perplexity`` writes it on x86/ARM):

- 8 bytes magic ``_logits_``; uint32 ``n_ctx``; int32 ``n_vocab``; int32 ``n_chunk``;
- ``n_ctx * n_chunk`` int32 token ids: the tokenized text, chunk after chunk, *as
  tokenized* (the BOS that replaces each chunk's first token while the model runs is not
  written);
- per chunk, per scored token (``n_scored = n_ctx - 1 - n_ctx // 2`` of them: positions
  ``n_ctx // 2 .. n_ctx - 2``, each predicting the next token), ``nv = 2 * ceil(n_vocab / 2)
  + 4`` uint16 values: float32 ``scale``, float32 ``min_log_prob``, then the ``n_vocab``
  log-probs quantized as ``round((logit - min_logit) / scale)`` over the top 16 nats
  (``min_logit = max(min(logits), max(logits) - 16)``, ``scale = (max - min_logit) /
  65535``; entries at or below ``min_logit`` are 0), then one zero pad value if
  ``n_vocab`` is odd. A log-prob is read back as ``scale * q + min_log_prob`` (float32).

Numerics reproduced bit for bit from ``tools/perplexity/perplexity.cpp`` (float32
arithmetic where it uses float, ``expf`` as a correctly rounded float32 exponential,
double accumulation of ``sum_exp``): KLD per token is KL(base || quant) in nats, summing
only the entries whose dequantized base log-prob is > -16, *without renormalising*;
NLL(base) uses the dequantized base log-prob of the next token; same top-1 compares the
first maximum of the quant's logits with the first maximum of the dequantized base.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np

from quantfid.atomic import atomic_open
from quantfid.errors import FormatError, MismatchError
from quantfid.metrics.types import TokenMetrics

MAGIC = b"_logits_"
HEADER_BYTES = 20
LOGP_RANGE = 16.0  # nats kept below the top log-prob
_ROWS_PER_PASS = 32  # rows processed at once: memory O(rows x n_vocab)


def row_width(n_vocab: int) -> int:
    """uint16 values stored per scored token: ``2 * ceil(n_vocab / 2) + 4``."""
    return 2 * ((n_vocab + 1) // 2) + 4


def scored_per_chunk(n_ctx: int) -> int:
    """Tokens llama-perplexity scores per chunk: ``n_ctx - 1 - n_ctx // 2`` (255 at 512)."""
    return n_ctx - 1 - n_ctx // 2


def file_size(n_ctx: int, n_vocab: int, n_chunk: int) -> int:
    """Exact byte size of a kld-base file with these dimensions."""
    return (HEADER_BYTES + 4 * n_ctx * n_chunk
            + 2 * n_chunk * scored_per_chunk(n_ctx) * row_width(n_vocab))


def _expf(x: np.ndarray) -> np.ndarray:
    """float32 exp, correctly rounded (as glibc's expf for all practical inputs)."""
    return np.exp(x.astype(np.float64)).astype(np.float32)


def _as_f32_rows(x: Any, n_vocab: int, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[1] != n_vocab:
        raise MismatchError(f"{what}: expected shape (n, {n_vocab}), got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise FormatError(f"{what}: non-finite value {arr[r, c]} at (token {r}, vocab {c})")
    return arr


def encode_rows(logits: Any) -> np.ndarray:
    """Encode logits (n, n_vocab) into kld-base rows (n, row_width) uint16, as llama.cpp does.

    Matches ``log_softmax(n_vocab, logits, uint16_t * log_prob, tok)`` in perplexity.cpp
    bit for bit: float32 max/min, ``sum_exp`` accumulated in double, float32 scale and
    ``min_log_prob``, round-half-to-even quantization (its ``nearest_int``). Log-probs
    may be passed instead of logits (the encoding is shift-invariant up to float rounding).
    """
    arr = np.asarray(logits.detach().float().cpu().numpy() if hasattr(logits, "detach")
                     else logits)
    if arr.ndim != 2:
        raise MismatchError(f"logits: expected a 2-d array (n, n_vocab), got shape {arr.shape}")
    n, n_vocab = arr.shape
    arr = _as_f32_rows(arr, n_vocab, "logits")
    out = np.zeros((n, row_width(n_vocab)), dtype="<u2")
    for lo in range(0, n, _ROWS_PER_PASS):
        x = arr[lo:lo + _ROWS_PER_PASS]
        mx = x.max(axis=1)
        mn = np.maximum(x.min(axis=1), mx - np.float32(LOGP_RANGE))
        sum_exp = _expf(x - mx[:, None]).astype(np.float64).sum(axis=1)
        lse = np.log(sum_exp).astype(np.float32)
        min_log_prob = (mn - mx) - lse
        scale = (mx - mn) / np.float32(65535.0)
        head = np.stack([scale, min_log_prob], axis=1).astype("<f4")
        out[lo:lo + len(x), :4] = head.view("<u2")
        nz = scale != 0
        inv = np.ones_like(scale)
        inv[nz] = np.float32(1.0) / scale[nz]
        v = np.rint(inv[:, None] * (x - mn[:, None]))
        q = np.where(x > mn[:, None], v, np.float32(0)).astype(np.int64) & 0xFFFF
        q[~nz] = 0
        out[lo:lo + len(x), 4:4 + n_vocab] = q
    return out


def base_nll(logits: Any, targets: np.ndarray) -> np.ndarray:
    """-ln p(target) from exact logits as llama-perplexity prints it in the base run (float32)."""
    arr = np.asarray(logits.detach().float().cpu().numpy() if hasattr(logits, "detach")
                     else logits)
    arr = _as_f32_rows(arr, arr.shape[-1], "logits")
    mx = arr.max(axis=1)
    lse = np.log(_expf(arr - mx[:, None]).astype(np.float64).sum(axis=1)).astype(np.float32)
    return np.asarray((mx + lse) - arr[np.arange(len(arr)), np.asarray(targets)], dtype=np.float32)


def decode_header(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, min_log_prob) float32 arrays from rows (n, row_width)."""
    head = np.ascontiguousarray(rows[:, :4]).view("<f4")
    return head[:, 0].astype(np.float32), head[:, 1].astype(np.float32)


def decode_rows(rows: np.ndarray, n_vocab: int) -> np.ndarray:
    """Dequantized base log-probs (n, n_vocab) float32: ``scale * q + min_log_prob``."""
    scale, mlp = decode_header(rows)
    q = np.asarray(rows[:, 4:4 + n_vocab]).astype(np.float32)
    return np.asarray(scale[:, None] * q + mlp[:, None], dtype=np.float32)


def metrics_from_rows(rows: np.ndarray, q_logits: Any, targets: np.ndarray,
                      n_vocab: int | None = None) -> TokenMetrics:
    """Per-token metrics of quant logits against kld-base rows, exactly as llama-perplexity.

    kld: KL(base || quant) in nats over the entries with base log-prob > -16 (not
    renormalised); nll_ref / nll_q: -ln p(next) under each (base dequantized); dp:
    p_q(next) - p_base(next); same_top1: first argmax of the quant logits equals first
    argmax of the dequantized base; ref_top1_prob: exp of the dequantized base maximum.
    Values are llama.cpp's float32 results widened to float64. rkld, jsd and top-k
    overlaps are not defined for this format and are None.
    """
    rows = np.asarray(rows)
    n = rows.shape[0]
    n_vocab_padded = rows.shape[1] - 4
    q = np.asarray(q_logits.detach().float().cpu().numpy() if hasattr(q_logits, "detach")
                   else q_logits)
    ok_vocab = ((q.shape[-1] == n_vocab) if n_vocab is not None
                else (n_vocab_padded - 1 <= q.shape[-1] <= n_vocab_padded))
    if q.ndim != 2 or q.shape[0] != n or not ok_vocab:
        want = n_vocab if n_vocab is not None else "n_vocab"
        raise MismatchError(f"quant logits: expected shape ({n}, {want}) matching the base "
                            f"rows (width {rows.shape[1]}), got {q.shape}")
    n_vocab = q.shape[1]
    q = _as_f32_rows(q, n_vocab, "quant logits")
    tok = np.asarray(targets, dtype=np.int64)
    if tok.shape != (n,):
        raise MismatchError(f"targets: expected shape ({n},), got {tok.shape}")
    if n and (tok.min() < 0 or tok.max() >= n_vocab):
        raise MismatchError(f"targets: token id out of range [0, {n_vocab})")
    kld = np.empty(n, np.float64)
    out = {k: np.empty(n, np.float32) for k in ("nll", "nll_base", "p_diff", "top1")}
    same = np.empty(n, bool)
    for lo in range(0, n, _ROWS_PER_PASS):
        sl = slice(lo, min(n, lo + _ROWS_PER_PASS))
        x, r, t = q[sl], rows[sl], tok[sl]
        idx = np.arange(len(x))
        mx = x.max(axis=1)
        imax = x.argmax(axis=1)
        lse = np.log(_expf(x - mx[:, None]).astype(np.float64).sum(axis=1)).astype(np.float32)
        scale, mlp = decode_header(r)
        nll = (mx + lse) - x[idx, t]
        nll_base = -(scale * r[idx, 4 + t].astype(np.float32) + mlp)
        mxl = mx + lse
        plb = scale[:, None] * r[:, 4:4 + n_vocab].astype(np.float32) + mlp[:, None]
        imax_base = plb.argmax(axis=1)
        term = _expf(plb) * ((plb - x) + mxl[:, None])
        kld[sl] = np.where(plb > np.float32(-LOGP_RANGE), term, np.float32(0)).astype(
            np.float64).sum(axis=1)
        out["nll"][sl] = nll
        out["nll_base"][sl] = nll_base
        out["p_diff"][sl] = _expf(-nll) - _expf(-nll_base)
        out["top1"][sl] = _expf(plb.max(axis=1))
        same[sl] = imax == imax_base
    return TokenMetrics(kld=kld, same_top1=same, ref_top1_prob=out["top1"].astype(np.float64),
                        nll_ref=out["nll_base"].astype(np.float64),
                        nll_q=out["nll"].astype(np.float64), dp=out["p_diff"].astype(np.float64))


def _mean_and_uncertainty(s: float, s2: float, count: int) -> tuple[float, float]:
    if count < 1:
        return 0.0, 0.0
    f = s / count
    df = s2 / count - f * f
    return f, (math.sqrt(df / (count - 1)) if df > 0 and count > 10 else 0.0)


def _percentile(sorted_values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile: linear interpolation in float32."""
    v = sorted_values.astype(np.float32)
    fr = np.float32(fraction)
    if fr <= 0:
        return float(v[0])
    if fr >= 1:
        return float(v[-1])
    p = fr * np.float32(len(v) - 1)
    ip = int(p)
    p = p - np.float32(ip)
    return float((np.float32(1) - p) * v[ip] + p * v[min(ip + 1, len(v) - 1)])


def _median(sorted_values: np.ndarray) -> float:
    v = sorted_values.astype(np.float32)
    m = len(v)
    return float(np.float32(0.5) * (v[m // 2] + v[m // 2 - 1]) if m % 2 == 0 else v[m // 2])


@dataclass
class LlamaCppAccumulator:
    """Reproduces the sums and printed statistics of ``llama-perplexity --kl-divergence``.

    Feed it the TokenMetrics of ``metrics_from_rows`` (chunk by chunk); ``chunk_line()``
    gives the per-chunk running line, ``final()`` the "Perplexity / KL divergence / Token
    probability statistics" sections (values as printed: percent where it prints percent).
    """

    sum_nll: float = 0.0
    sum_nll2: float = 0.0
    sum_nll_base: float = 0.0
    sum_nll_base2: float = 0.0
    sum_nll_nll_base: float = 0.0
    sum_kld: float = 0.0
    sum_kld2: float = 0.0
    sum_p_diff: float = 0.0
    sum_p_diff2: float = 0.0
    sum_p_diff4: float = 0.0
    n_same_top: int = 0
    count: int = 0
    kld_values: list[np.ndarray] = field(default_factory=list)
    p_diff_values: list[np.ndarray] = field(default_factory=list)

    def add(self, tm: TokenMetrics) -> None:
        if tm.nll_q is None or tm.nll_ref is None or tm.dp is None:
            raise MismatchError("llama.cpp statistics need nll_q, nll_ref and dp")
        nll = tm.nll_q.astype(np.float32)
        nb = tm.nll_ref.astype(np.float32)
        pd = tm.dp.astype(np.float32)
        f64 = np.float64
        self.sum_nll += float(nll.astype(f64).sum())
        self.sum_nll2 += float((nll * nll).astype(f64).sum())
        self.sum_nll_base += float(nb.astype(f64).sum())
        self.sum_nll_base2 += float((nb * nb).astype(f64).sum())
        self.sum_nll_nll_base += float((nll * nb).astype(f64).sum())
        self.sum_kld += float(tm.kld.sum())
        self.sum_kld2 += float((tm.kld * tm.kld).sum())
        pd2 = (pd * pd).astype(f64)
        self.sum_p_diff += float(pd.astype(f64).sum())
        self.sum_p_diff2 += float(pd2.sum())
        self.sum_p_diff4 += float((pd2 * pd2).sum())
        self.n_same_top += int(np.count_nonzero(tm.same_top1))
        self.count += len(tm)
        self.kld_values.append(tm.kld.astype(np.float32))
        self.p_diff_values.append(pd)

    def _cov(self) -> float:
        c = self.count
        if c < 10:
            return 0.0
        return (self.sum_nll_nll_base / c - (self.sum_nll / c) * (self.sum_nll_base / c)) / (c - 1)

    def chunk_line(self) -> dict[str, float]:
        """The running per-chunk line: PPL, ln ratio, KLD, RMS dp (%), same top (%)."""
        lp = _mean_and_uncertainty(self.sum_nll, self.sum_nll2, self.count)
        lb = _mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, self.count)
        ratio_unc = math.sqrt(max(0.0, lp[1] ** 2 + lb[1] ** 2 - 2.0 * self._cov()))
        kl = _mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count)
        mse = _mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count)
        rms = math.sqrt(mse[0])
        top = self.n_same_top / self.count
        return {"ppl": math.exp(lp[0]), "ppl_unc": math.exp(lp[0]) * lp[1],
                "ln_ratio": lp[0] - lb[0], "ln_ratio_unc": ratio_unc,
                "kld": kl[0], "kld_unc": kl[1],
                "rms_dp_pct": 100 * rms, "rms_dp_unc_pct": 100 * (0.5 / rms * mse[1] if rms else 0.0),
                "same_top_pct": 100 * top,
                "same_top_unc_pct": 100 * math.sqrt(top * (1 - top) / (self.count - 1))}

    def final(self) -> dict[str, float]:
        """The printed final statistics (llama.cpp prints them only when count >= 100)."""
        lp = _mean_and_uncertainty(self.sum_nll, self.sum_nll2, self.count)
        lb = _mean_and_uncertainty(self.sum_nll_base, self.sum_nll_base2, self.count)
        cov = self._cov()
        ppl, ppl_b = math.exp(lp[0]), math.exp(lb[0])
        ppl_unc, ppl_b_unc = ppl * lp[1], ppl_b * lb[1]
        ratio = lp[0] - lb[0]
        ratio_unc = math.sqrt(max(0.0, lp[1] ** 2 + lb[1] ** 2 - 2.0 * cov))
        kl = _mean_and_uncertainty(self.sum_kld, self.sum_kld2, self.count)
        kv = np.sort(np.concatenate(self.kld_values))
        pv = np.sort(np.concatenate(self.p_diff_values))
        dp = _mean_and_uncertainty(self.sum_p_diff, self.sum_p_diff2, self.count)
        mse = _mean_and_uncertainty(self.sum_p_diff2, self.sum_p_diff4, self.count)
        rms = math.sqrt(mse[0])
        top = self.n_same_top / self.count
        res = {
            "ppl_q": ppl, "ppl_q_unc": ppl_unc, "ppl_base": ppl_b, "ppl_base_unc": ppl_b_unc,
            "cor_pct": 100 * cov / (lp[1] * lb[1]) if lp[1] * lb[1] else float("nan"),
            "ln_ratio": ratio, "ln_ratio_unc": ratio_unc,
            "ratio": math.exp(ratio), "ratio_unc": math.exp(ratio) * ratio_unc,
            "diff": ppl - ppl_b,
            "diff_unc": math.sqrt(max(0.0, ppl_unc ** 2 + ppl_b_unc ** 2 - 2 * ppl * ppl_b * cov)),
            "kld_mean": kl[0], "kld_mean_unc": kl[1], "kld_max": float(kv[-1]),
            "kld_median": _median(kv), "kld_min": float(kv[0]),
            "dp_mean_pct": 100 * dp[0], "dp_mean_unc_pct": 100 * dp[1],
            "dp_max_pct": 100 * float(pv[-1]), "dp_median_pct": 100 * _median(pv),
            "dp_min_pct": 100 * float(pv[0]),
            "rms_dp_pct": 100 * rms, "rms_dp_unc_pct": 100 * (0.5 / rms * mse[1] if rms else 0.0),
            "same_top_pct": 100 * top,
            "same_top_unc_pct": 100 * math.sqrt(top * (1 - top) / (self.count - 1)),
        }
        for frac, name in ((0.999, "99_9"), (0.99, "99"), (0.95, "95"), (0.90, "90"),
                           (0.10, "10"), (0.05, "5"), (0.01, "1"), (0.001, "0_1")):
            res[f"kld_p{name}"] = _percentile(kv, frac)
            res[f"dp_p{name}_pct"] = 100 * _percentile(pv, frac)
        for frac, name in ((0.75, "75"), (0.25, "25")):
            res[f"dp_p{name}_pct"] = 100 * _percentile(pv, frac)
        return res


class KldBase:
    """A kld-base file, memory-mapped. Corrupt, truncated or foreign files raise FormatError."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FormatError(f"{self.path}: no such kld-base file")
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            head = fh.read(HEADER_BYTES)
        if len(head) < 8 or head[:8] != MAGIC:
            raise FormatError(f"{self.path}: not a llama.cpp kld-base file (expected magic "
                              f"{MAGIC!r}, found {head[:8]!r})")
        if len(head) < HEADER_BYTES:
            raise FormatError(f"{self.path}: truncated header ({size} bytes, need {HEADER_BYTES})")
        self.n_ctx = int(np.frombuffer(head, "<u4", 1, 8)[0])
        self.n_vocab = int(np.frombuffer(head, "<i4", 1, 12)[0])
        self.n_chunk = int(np.frombuffer(head, "<i4", 1, 16)[0])
        if self.n_ctx < 2 or self.n_vocab < 1 or self.n_chunk < 0:
            raise FormatError(f"{self.path}: bad header n_ctx={self.n_ctx}, "
                              f"n_vocab={self.n_vocab}, n_chunk={self.n_chunk}")
        expected = file_size(self.n_ctx, self.n_vocab, self.n_chunk)
        if size != expected:
            what = "truncated" if size < expected else "has trailing bytes"
            raise FormatError(f"{self.path}: file {what}: expected {expected} bytes for n_ctx="
                              f"{self.n_ctx}, n_vocab={self.n_vocab}, n_chunk={self.n_chunk}, "
                              f"found {size}")
        self.first = self.n_ctx // 2
        self.n_scored = scored_per_chunk(self.n_ctx)
        self.nv = row_width(self.n_vocab)
        tok_bytes = 4 * self.n_ctx * self.n_chunk
        self.tokens: np.ndarray = np.memmap(self.path, "<i4", "r", HEADER_BYTES,
                                            (self.n_chunk, self.n_ctx)) if self.n_chunk else \
            np.zeros((0, self.n_ctx), np.int32)
        self.rows: np.ndarray = np.memmap(self.path, "<u2", "r", HEADER_BYTES + tok_bytes,
                                          (self.n_chunk, self.n_scored, self.nv)) \
            if self.n_chunk else np.zeros((0, self.n_scored, self.nv), np.uint16)

    @property
    def n_tokens(self) -> int:
        """Scored tokens in the file."""
        return self.n_chunk * self.n_scored

    def _chunk(self, chunk: int) -> int:
        if not 0 <= chunk < self.n_chunk:
            raise MismatchError(f"{self.path}: chunk {chunk} out of range [0, {self.n_chunk})")
        return chunk

    def targets(self, chunk: int) -> np.ndarray:
        """Next-token ids of the scored positions of ``chunk`` (n_scored,), each checked to
        lie in [0, n_vocab) (FormatError naming the chunk and position otherwise)."""
        t = np.asarray(self.tokens[self._chunk(chunk), self.first + 1:], dtype=np.int64)
        bad = np.flatnonzero((t < 0) | (t >= self.n_vocab))
        if len(bad):
            raise FormatError(f"{self.path}: chunk {chunk}, scored position {bad[0]}: token id "
                              f"{t[bad[0]]} outside the vocabulary [0, {self.n_vocab})")
        return t

    def chunk_rows(self, chunk: int) -> np.ndarray:
        """The stored rows of ``chunk`` (n_scored, row_width) uint16, their headers checked:
        ``scale`` finite, >= 0 and at most 16/65535 (the 16-nat range), ``min_log_prob``
        finite and ``min_log_prob + 65535 * scale`` (the top log-prob, -log sum exp) <= 0
        up to float rounding. Anything else is a corrupt file (FormatError)."""
        r = self.rows[self._chunk(chunk)]
        scale, mlp = decode_header(r)
        top = mlp.astype(np.float64) + 65535.0 * scale.astype(np.float64)
        ok = (np.isfinite(scale) & np.isfinite(mlp) & (scale >= 0)
              & (scale <= np.float32((LOGP_RANGE + 1e-3) / 65535.0)) & (top <= 1e-3))
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise FormatError(f"{self.path}: chunk {chunk}, scored position {i}: corrupt row "
                              f"header (scale {scale[i]!r}, min_log_prob {mlp[i]!r})")
        return r

    def logp(self, chunk: int) -> np.ndarray:
        """Dequantized base log-probs of ``chunk``: (n_scored, n_vocab) float32."""
        return decode_rows(self.chunk_rows(chunk), self.n_vocab)

    def nll_base(self, chunk: int) -> np.ndarray:
        """-ln p_base(next token) per scored token of ``chunk``, float32, as llama.cpp."""
        r = self.chunk_rows(chunk)
        scale, mlp = decode_header(r)
        t = self.targets(chunk)
        return np.asarray(-(scale * r[np.arange(len(t)), 4 + t].astype(np.float32) + mlp),
                          dtype=np.float32)

    def ppl_base(self) -> tuple[float, float]:
        """llama-perplexity's "Mean PPL(base)" and its uncertainty, from the file alone."""
        if self.n_chunk == 0:
            raise FormatError(f"{self.path}: no chunks")
        s = s2 = 0.0
        for c in range(self.n_chunk):
            nb = self.nll_base(c)
            s += float(nb.astype(np.float64).sum())
            s2 += float((nb * nb).astype(np.float64).sum())
        m, se = _mean_and_uncertainty(s, s2, self.n_tokens)
        return math.exp(m), math.exp(m) * se

    def metrics_against(self, chunk: int, q_logits: Any,
                        targets: np.ndarray | None = None) -> TokenMetrics:
        """Quant logits (n_scored, n_vocab) for ``chunk`` vs the base, computed llama.cpp's way.

        ``targets``, when given, must equal the file's own next tokens (else MismatchError).
        """
        t = self.targets(chunk)
        if targets is not None and not np.array_equal(np.asarray(targets), t):
            raise MismatchError(f"{self.path}: targets differ from the file's tokens in chunk "
                                f"{chunk}")
        return metrics_from_rows(self.chunk_rows(chunk), q_logits, t, self.n_vocab)


class KldBaseWriter:
    """Streams a kld-base file: ``append(logits)`` once per chunk, then ``close()``.

    The file appears atomically at ``close()``; an error or a missing chunk leaves nothing.
    ``tokens``: (n_chunk, n_ctx) ids as tokenized (not BOS-replaced), as llama.cpp writes.
    """

    def __init__(self, path: str | os.PathLike[str], tokens: np.ndarray, n_vocab: int) -> None:
        tok = np.asarray(tokens)
        if tok.ndim != 2 or tok.shape[1] < 2:
            raise MismatchError(f"tokens: expected shape (n_chunk, n_ctx), got {tok.shape}")
        self.path = Path(path)
        self.n_chunk, self.n_ctx = tok.shape
        self.n_vocab = int(n_vocab)
        self.n_scored = scored_per_chunk(self.n_ctx)
        self._written = 0
        self._cm = atomic_open(self.path, "wb")
        self._fh: IO[Any] | None = self._cm.__enter__()
        self._fh.write(MAGIC)
        self._fh.write(np.array([self.n_ctx], "<u4").tobytes())
        self._fh.write(np.array([self.n_vocab, self.n_chunk], "<i4").tobytes())
        self._fh.write(np.ascontiguousarray(tok, "<i4").tobytes())

    def append(self, logits: Any) -> None:
        """Encode and write one chunk's logits (or log-probs), shape (n_scored, n_vocab)."""
        if self._fh is None:
            raise FormatError(f"{self.path}: writer is closed")
        if self._written >= self.n_chunk:
            raise MismatchError(f"{self.path}: all {self.n_chunk} chunks already written")
        arr = np.asarray(logits.detach().float().cpu().numpy() if hasattr(logits, "detach")
                         else logits)
        if arr.shape != (self.n_scored, self.n_vocab):
            raise MismatchError(f"chunk {self._written}: expected logits of shape "
                                f"({self.n_scored}, {self.n_vocab}), got {arr.shape}")
        self._fh.write(encode_rows(arr).tobytes())
        self._written += 1

    def close(self) -> KldBase:
        if self._fh is None:
            raise FormatError(f"{self.path}: writer is closed")
        if self._written != self.n_chunk:
            self.abort()
            raise MismatchError(f"{self.path}: {self._written} of {self.n_chunk} chunks written; "
                                "nothing kept")
        self._fh = None
        self._cm.__exit__(None, None, None)
        return KldBase(self.path)

    def abort(self) -> None:
        """Drop the partial file."""
        if self._fh is not None:
            self._fh = None
            err = FormatError("aborted")
            with contextlib.suppress(FormatError):
                self._cm.__exit__(FormatError, err, None)

    def __enter__(self) -> KldBaseWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is not None:
            self.abort()
        elif self._fh is not None:
            self.close()


def write_kld_base(path: str | os.PathLike[str], tokens: np.ndarray, n_vocab: int,
                   chunks: Any) -> KldBase:
    """Write a kld-base file from ``tokens`` (n_chunk, n_ctx) and an iterable of per-chunk
    logits or log-probs (n_scored, n_vocab), atomically; returns the reader."""
    with KldBaseWriter(path, tokens, n_vocab) as w:
        for chunk in chunks:
            w.append(chunk)
        return w.close()


def kld_base_from_store(store: Any, path: str | os.PathLike[str]) -> KldBase:
    """Export a quantfid full store (llama.cpp scoring) as a kld-base file llama-perplexity reads.

    The store's log-probs are encoded as llama.cpp encodes logits (shift-invariant, so the
    16-bit codes agree with llama.cpp's own up to float rounding of the normaliser).
    """
    meta = store.meta
    if meta.kind != "full" or meta.scoring != "llamacpp":
        raise MismatchError(f"{store.path}: only a full store with llama.cpp scoring can be "
                            f"exported (this one: kind {meta.kind!r}, scoring {meta.scoring!r})")
    return write_kld_base(path, np.asarray(store.tokens), meta.vocab_size,
                          (np.asarray(store.logp(w), dtype=np.float32)
                           for w in range(store.n_windows)))
