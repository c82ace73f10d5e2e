"""Corpus-level fidelity statistics from per-token metrics, with llama.cpp's definitions.

The formulas follow llama.cpp's `tools/perplexity/perplexity.cpp` (`kl_divergence`), written out
here from their definitions (n tokens; sums over tokens):

- mean and uncertainty of a quantity x: f = sum(x)/n, v = sum(x^2)/n - f^2,
  se = sqrt(v / (n - 1)) when v > 0 and n > 10, 0 when v <= 0 and n > 10. For n <= 10 llama.cpp
  prints 0; we return None (not computable).
- covariance of x, y: (sum(xy)/n - (sum(x)/n)(sum(y)/n)) / (n - 1)  (the covariance of the means).
- PPL(Q) = exp(mean nll_q), PPL(ref) = exp(mean nll_ref), se(PPL) = PPL * se(ln PPL).
- ln(PPL(Q)/PPL(ref)) = mean nll_q - mean nll_ref,
  se = sqrt(se_q^2 + se_ref^2 - 2 cov(nll_q, nll_ref)).
- PPL ratio = exp(ln ratio), se = ratio * se(ln ratio);
  PPL diff = PPL(Q) - PPL(ref), se = sqrt(se(PPL_Q)^2 + se(PPL_ref)^2 - 2 PPL_Q PPL_ref cov).
- Cor(ln PPL(Q), ln PPL(ref)) = cov / (se_q se_ref): the (population) Pearson correlation of the
  per-token NLLs.
- Mean KLD +- se as above; median (mean of the two middle values for even n); percentile at
  fraction f: position f (n - 1) on the ascending values, linear interpolation between the two
  neighbours (llama.cpp does this in float32; we do it in float64).
- Mean dp +- se; RMS dp = sqrt(mean dp^2), se = se(dp^2) / (2 RMS).
- Same top-1 = n_same / n, se = sqrt(p (1 - p) / (n - 1)) (binomial). All values are fractions
  (llama.cpp prints percent for dp, RMS dp, same top-1 and the correlation).

On top of llama.cpp: KLD by reference-confidence bucket (the reference's top-1 probability in
[0,.25), [.25,.5), [.5,.75), [.75,.95), [.95,1]) and a bootstrap 95 % percentile CI for mean
KLD and ln PPL ratio (llama.cpp's se treats tokens as independent; tokens in one window are
not). ``ci_method`` names the resampling that produced them:

- ``"window-bootstrap"`` (at least ``MIN_WINDOWS`` = 10 windows): resample whole windows;
  each resample draws as many windows as there are, with replacement, and takes the
  token-weighted mean (sum over drawn windows / tokens drawn).
- ``"token-bootstrap"``: the same when no window ids were given (every token its own block).
- ``"moving-block-bootstrap"`` (fewer windows, more than 10 tokens): the studentized circular
  moving-block bootstrap within windows (``quantfid.metrics.blocks.block_bootstrap_t``), block
  length ``ci_block_tokens`` = the larger of the Politis-White automatic lengths of per-token
  KLD and of the per-token NLL difference (capped at the shortest window). A window's tokens
  are taken in the order they were added.
- None: no interval (n_boot = 0, one window of <= 10 tokens, or a single token block).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from quantfid.errors import MismatchError
from quantfid.metrics.blocks import (
    block_bootstrap_t,
    series_block_length,
    window_bootstrap_means,
)
from quantfid.metrics.types import STATS_KEYS, TokenMetrics

BUCKET_EDGES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.95, 1.0)
PERCENTILES: dict[str, float] = {"kld_p90": 0.90, "kld_p95": 0.95, "kld_p99": 0.99,
                                 "kld_p99_9": 0.999}
CI_LEVEL = 0.95
MIN_WINDOWS = 10  # fewer windows: resample blocks of tokens within them

# running sums kept by the accumulator (x2: sum of squares, nll_qr: sum of nll_q * nll_ref)
_SUM_KEYS = ("kld", "kld2", "rkld", "jsd", "nll_q", "nll_q2", "nll_ref", "nll_ref2", "nll_qr",
             "dp", "dp2", "dp4", "same", "top5", "top10")


@dataclass(frozen=True)
class FidelityStats:
    """Summary of a quant against its reference over a corpus; fractions, nats.

    Every `STATS_KEYS` field is None where not computable (NLL-based ones without targets,
    uncertainties for n <= 10 tokens). Extra fields: uncertainties of the PPLs, ratio and
    difference, Cor(ln PPL(Q), ln PPL(ref)), se of mean dp and RMS dp, mean top-k overlaps,
    bootstrap CIs, the number of windows (blocks) and KLD by reference-confidence bucket.
    """

    n_tokens: int
    kld_mean: float | None = None
    kld_mean_se: float | None = None
    kld_median: float | None = None
    kld_p90: float | None = None
    kld_p95: float | None = None
    kld_p99: float | None = None
    kld_p99_9: float | None = None
    kld_max: float | None = None
    kld_min: float | None = None
    rkld_mean: float | None = None
    jsd_mean: float | None = None
    ppl_q: float | None = None
    ppl_ref: float | None = None
    ln_ppl_ratio: float | None = None
    ln_ppl_ratio_se: float | None = None
    ppl_ratio: float | None = None
    ppl_diff: float | None = None
    same_top1: float | None = None
    same_top1_se: float | None = None
    dp_mean: float | None = None
    rms_dp: float | None = None
    ppl_q_se: float | None = None
    ppl_ref_se: float | None = None
    ppl_ratio_se: float | None = None
    ppl_diff_se: float | None = None
    ln_ppl_cor: float | None = None
    dp_mean_se: float | None = None
    rms_dp_se: float | None = None
    top5_overlap_mean: float | None = None
    top10_overlap_mean: float | None = None
    kld_mean_ci_low: float | None = None
    kld_mean_ci_high: float | None = None
    ln_ppl_ratio_ci_low: float | None = None
    ln_ppl_ratio_ci_high: float | None = None
    ci_method: str | None = None
    ci_block_tokens: int | None = None
    n_windows: int = 0
    kld_buckets: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """Plain dict: every STATS_KEYS key first, then the extra fields (None -> null)."""
        d = asdict(self)
        d["kld_buckets"] = [dict(b) for b in self.kld_buckets]
        out = {k: d.pop(k) for k in STATS_KEYS}
        out.update(d)
        return out


def mean_and_se(s: float, s2: float, n: int) -> tuple[float | None, float | None]:
    """llama.cpp's mean_and_uncertainty; se is None for n <= 10 (llama.cpp prints 0)."""
    if n < 1:
        return None, None
    f = s / n
    var = s2 / n - f * f
    if n <= 10:
        return f, None
    return f, math.sqrt(var / (n - 1)) if var > 0 else 0.0


def covariance(sa: float, sb: float, sab: float, n: int) -> float | None:
    """llama.cpp's covariance of the two means; None for n < 10 (llama.cpp returns 0)."""
    if n < 10:
        return None
    return (sab / n - (sa / n) * (sb / n)) / (n - 1)


def percentile_sorted(values: np.ndarray, fraction: float) -> float:
    """llama.cpp's percentile on ascending values: linear interpolation at fraction * (n - 1)."""
    n = values.shape[0]
    if fraction <= 0:
        return float(values[0])
    if fraction >= 1:
        return float(values[-1])
    p = fraction * (n - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * values[ip] + p * values[min(ip + 1, n - 1)])


def median_sorted(values: np.ndarray) -> float:
    n = values.shape[0]
    if n % 2 == 0:
        return float(0.5 * (values[n // 2] + values[n // 2 - 1]))
    return float(values[n // 2])


@dataclass
class Parts:
    """Mergeable partial state: sums, per-token KLD values, NLL differences and window ids
    (arrival order), per-block sums, bucket sums."""

    n: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUM_KEYS, 0.0))
    present: dict[str, bool] = field(default_factory=lambda: {
        "nll": True, "dp": True, "rkld": True, "jsd": True, "top": True})
    kld_values: list[np.ndarray] = field(default_factory=list)
    diff_values: list[np.ndarray] = field(default_factory=list)
    token_windows: list[np.ndarray | None] = field(default_factory=list)  # None: anonymous
    block_ids: list[np.ndarray] = field(default_factory=list)  # keyed blocks (window ids)
    block_keyed: list[np.ndarray] = field(default_factory=list)  # rows: kld, nll diff, n
    block_anon: list[np.ndarray] = field(default_factory=list)  # one block per token
    bucket_n: np.ndarray = field(default_factory=lambda: np.zeros(5, dtype=np.int64))
    bucket_kld: np.ndarray = field(default_factory=lambda: np.zeros(5, dtype=np.float64))

    def add(self, tm: TokenMetrics, window_ids: np.ndarray | None) -> None:
        n = len(tm)
        # NLLs count only when every token has them: a server that returns a target's log-prob
        # only among its top K (NaN elsewhere) gives no perplexity, not a biased one.
        has_nll = tm.nll_q is not None and tm.nll_ref is not None \
            and not bool(np.isnan(tm.nll_q).any() or np.isnan(tm.nll_ref).any())
        if n:
            self.present["nll"] &= has_nll
        self.present["dp"] &= tm.dp is not None
        self.present["rkld"] &= tm.rkld is not None
        self.present["jsd"] &= tm.jsd is not None
        self.present["top"] &= tm.top5_overlap is not None and tm.top10_overlap is not None
        if n == 0:
            return
        kld = np.asarray(tm.kld, dtype=np.float64)
        s = self.sums
        s["kld"] += float(np.sum(kld))
        s["kld2"] += float(np.sum(kld * kld))
        s["same"] += float(np.count_nonzero(tm.same_top1))
        if tm.rkld is not None:
            s["rkld"] += float(np.sum(tm.rkld))
        if tm.jsd is not None:
            s["jsd"] += float(np.sum(tm.jsd))
        if tm.top5_overlap is not None and tm.top10_overlap is not None:
            s["top5"] += float(np.sum(tm.top5_overlap))
            s["top10"] += float(np.sum(tm.top10_overlap))
        diff = np.zeros(n)
        if has_nll:
            assert tm.nll_q is not None and tm.nll_ref is not None
            a = np.asarray(tm.nll_q, dtype=np.float64)
            b = np.asarray(tm.nll_ref, dtype=np.float64)
            s["nll_q"] += float(np.sum(a))
            s["nll_q2"] += float(np.sum(a * a))
            s["nll_ref"] += float(np.sum(b))
            s["nll_ref2"] += float(np.sum(b * b))
            s["nll_qr"] += float(np.sum(a * b))
            diff = a - b
            if tm.dp is not None:
                dp = np.asarray(tm.dp, dtype=np.float64)
                dp2 = dp * dp
                s["dp"] += float(np.sum(dp))
                s["dp2"] += float(np.sum(dp2))
                s["dp4"] += float(np.sum(dp2 * dp2))
        self.n += n
        self.kld_values.append(kld.copy())
        self.diff_values.append(diff)
        if window_ids is None:
            self.token_windows.append(None)
            self.block_anon.append(np.stack([kld, diff, np.ones(n)]))
        else:
            w = np.asarray(window_ids)
            if w.shape != (n,):
                raise MismatchError(f"window ids must have shape ({n},), got {w.shape}")
            self.token_windows.append(w.copy())
            ids, inv = np.unique(w, return_inverse=True)
            self.block_ids.append(ids)
            self.block_keyed.append(np.stack([
                np.bincount(inv, weights=kld, minlength=ids.size),
                np.bincount(inv, weights=diff, minlength=ids.size),
                np.bincount(inv, minlength=ids.size).astype(np.float64)]))
        b = np.clip(np.searchsorted(np.asarray(BUCKET_EDGES[1:-1]), tm.ref_top1_prob,
                                    side="right"), 0, 4)
        self.bucket_n += np.bincount(b, minlength=5)
        self.bucket_kld += np.bincount(b, weights=kld, minlength=5)

    def merge(self, other: Parts) -> None:
        """Add another state whose tokens come after this one's."""
        for k in ("nll", "dp", "rkld", "jsd", "top"):
            self.present[k] &= other.present[k]
        self.n += other.n
        for k in _SUM_KEYS:
            self.sums[k] += other.sums[k]
        self.kld_values.extend(other.kld_values)
        self.diff_values.extend(other.diff_values)
        self.token_windows.extend(other.token_windows)
        self.block_ids.extend(other.block_ids)
        self.block_keyed.extend(other.block_keyed)
        self.block_anon.extend(other.block_anon)
        self.bucket_n = self.bucket_n + other.bucket_n
        self.bucket_kld = self.bucket_kld + other.bucket_kld

    def blocks(self) -> np.ndarray:
        """(3, n_blocks): per-block KLD sum, NLL-difference sum, token count; keyed blocks in
        ascending window-id order, then the one-token blocks in arrival order."""
        parts = []
        if self.block_ids:
            ids, inv = np.unique(np.concatenate(self.block_ids), return_inverse=True)
            vals = np.concatenate(self.block_keyed, axis=1)
            parts.append(np.stack([np.bincount(inv, weights=vals[k], minlength=ids.size)
                                   for k in range(3)]))
        parts.extend(self.block_anon)
        return np.concatenate(parts, axis=1) if parts else np.zeros((3, 0))

    def series(self) -> tuple[np.ndarray, list[int]]:
        """(2, n) per-token KLD and NLL difference with the windows laid end to end (keyed
        windows in ascending id order, each in arrival order; then every anonymous token as
        a window of one), and the window sizes."""
        kld = np.concatenate(self.kld_values) if self.kld_values else np.zeros(0)
        diff = np.concatenate(self.diff_values) if self.diff_values else np.zeros(0)
        keyed = [w is not None for w in self.token_windows]
        mask = np.concatenate([np.full(v.size, k) for v, k in zip(self.kld_values, keyed,
                                                                    strict=True)]) \
            if self.kld_values else np.zeros(0, dtype=bool)
        sizes: list[int] = []
        order = np.zeros(0, dtype=np.int64)
        if any(keyed):
            wid = np.concatenate([w for w in self.token_windows if w is not None])
            pos = np.flatnonzero(mask)
            srt = np.argsort(wid, kind="stable")
            order = pos[srt]
            sizes = np.unique(wid, return_counts=True)[1].tolist()
        anon = np.flatnonzero(~mask)
        order = np.concatenate([order, anon])
        sizes += [1] * anon.size
        return np.stack([kld[order], diff[order]]), sizes


def _ci(values: np.ndarray) -> tuple[float, float]:
    a = (1 - CI_LEVEL) / 2
    lo, hi = np.quantile(values, [a, 1 - a])
    return float(lo), float(hi)


def stats_from_parts(parts: Parts, n_boot: int = 1000,
                     rng: np.random.Generator | None = None) -> FidelityStats:
    """The statistics of a Parts state (see the module docstring for every formula)."""
    n = parts.n
    buckets = tuple(
        {"lo": BUCKET_EDGES[i], "hi": BUCKET_EDGES[i + 1], "n": int(parts.bucket_n[i]),
         "kld_mean": float(parts.bucket_kld[i] / parts.bucket_n[i]) if parts.bucket_n[i] else None}
        for i in range(5))
    blocks = parts.blocks()
    n_windows = int(blocks.shape[1])
    if n == 0:
        return FidelityStats(n_tokens=0, n_windows=0, kld_buckets=buckets)
    s = parts.sums
    v: dict[str, Any] = {"n_tokens": n, "n_windows": n_windows, "kld_buckets": buckets}
    v["kld_mean"], v["kld_mean_se"] = mean_and_se(s["kld"], s["kld2"], n)
    srt = np.sort(np.concatenate(parts.kld_values))
    v["kld_median"] = median_sorted(srt)
    for key, frac in PERCENTILES.items():
        v[key] = percentile_sorted(srt, frac)
    v["kld_max"] = float(srt[-1])
    v["kld_min"] = float(srt[0])
    if parts.present["rkld"]:
        v["rkld_mean"] = s["rkld"] / n
    if parts.present["jsd"]:
        v["jsd_mean"] = s["jsd"] / n
    if parts.present["top"]:
        v["top5_overlap_mean"] = s["top5"] / n
        v["top10_overlap_mean"] = s["top10"] / n
    p_same = s["same"] / n
    v["same_top1"] = p_same
    v["same_top1_se"] = math.sqrt(p_same * (1 - p_same) / (n - 1)) if n > 1 else None
    if parts.present["nll"]:
        lq, lq_se = mean_and_se(s["nll_q"], s["nll_q2"], n)
        lr, lr_se = mean_and_se(s["nll_ref"], s["nll_ref2"], n)
        assert lq is not None and lr is not None
        cov = covariance(s["nll_q"], s["nll_ref"], s["nll_qr"], n)
        v["ppl_q"], v["ppl_ref"] = math.exp(lq), math.exp(lr)
        v["ln_ppl_ratio"] = lq - lr
        v["ppl_ratio"] = math.exp(lq - lr)
        v["ppl_diff"] = v["ppl_q"] - v["ppl_ref"]
        if lq_se is not None and lr_se is not None and cov is not None:
            v["ppl_q_se"], v["ppl_ref_se"] = v["ppl_q"] * lq_se, v["ppl_ref"] * lr_se
            v["ln_ppl_ratio_se"] = math.sqrt(max(lq_se ** 2 + lr_se ** 2 - 2 * cov, 0.0))
            v["ppl_ratio_se"] = v["ppl_ratio"] * v["ln_ppl_ratio_se"]
            v["ppl_diff_se"] = math.sqrt(max(v["ppl_q_se"] ** 2 + v["ppl_ref_se"] ** 2
                                             - 2 * v["ppl_q"] * v["ppl_ref"] * cov, 0.0))
            if lq_se > 0 and lr_se > 0:
                v["ln_ppl_cor"] = cov / (lq_se * lr_se)
    if parts.present["nll"] and parts.present["dp"]:
        v["dp_mean"], v["dp_mean_se"] = mean_and_se(s["dp"], s["dp2"], n)
        mse, mse_se = mean_and_se(s["dp2"], s["dp4"], n)
        assert mse is not None
        v["rms_dp"] = math.sqrt(mse) if mse > 0 else 0.0
        if mse_se is not None and v["rms_dp"] > 0:
            v["rms_dp_se"] = 0.5 / v["rms_dp"] * mse_se
    v.update(_intervals(parts, blocks, n_boot, rng))
    return FidelityStats(**v)


def _intervals(parts: Parts, blocks: np.ndarray, n_boot: int,
               rng: np.random.Generator | None) -> dict[str, Any]:
    """The bootstrap CIs of mean KLD and ln PPL ratio, and the method that made them."""
    n_windows = int(blocks.shape[1])
    if n_boot <= 0 or n_windows < 1:
        return {}
    gen = rng if rng is not None else np.random.default_rng(0)
    out: dict[str, Any] = {}
    if n_windows >= MIN_WINDOWS:
        bk, bd = window_bootstrap_means(blocks, n_boot, gen)
        out["ci_method"] = "window-bootstrap" if parts.block_ids else "token-bootstrap"
        kld, diff = _ci(bk), _ci(bd)
    elif parts.n > 10:
        series, sizes = parts.series()  # (2, n)
        length = series_block_length(series if parts.present["nll"] else series[:1], sizes)
        ci = block_bootstrap_t(series, sizes, length, n_boot, gen, CI_LEVEL)  # (2, 2)
        out.update({"ci_method": "moving-block-bootstrap", "ci_block_tokens": length})
        kld, diff = (float(ci[0, 0]), float(ci[0, 1])), (float(ci[1, 0]), float(ci[1, 1]))
    else:
        return {}
    out["kld_mean_ci_low"], out["kld_mean_ci_high"] = kld
    if parts.present["nll"]:
        out["ln_ppl_ratio_ci_low"], out["ln_ppl_ratio_ci_high"] = diff
    return out


def summarize(tm: TokenMetrics, windows: np.ndarray | None = None, *, n_boot: int = 1000,
              rng: np.random.Generator | None = None) -> FidelityStats:
    """Statistics of per-token metrics; windows: (T,) window id of each token (the bootstrap
    blocks), or None to treat each token as its own block. rng: seeded generator for the
    bootstrap (None -> np.random.default_rng(0), so results are reproducible)."""
    parts = Parts()
    parts.add(tm, windows)
    return stats_from_parts(parts, n_boot=n_boot, rng=rng)
