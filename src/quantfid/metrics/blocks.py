"""Intervals for the mean of a dependent token series: block length and moving-block bootstrap.

Per-token fidelity values (KLD, NLL differences) are autocorrelated along a window: a hard
passage raises every token's KLD for a while. When a corpus x ctx has many windows the
windows themselves are the resampling blocks (``summary.py``); when it has few (the default
study measures one), this module resamples *within* the windows:

* ``block_length(series)``: the automatic block length of Politis & White (2004), with the
  correction of Patton, Politis & White (2009), for the circular / moving-block bootstrap,
  written out from the papers (float64):

  - R(k): the autocovariance at lag k pooled over windows: the sum over every window of
    (x_t - m)(x_{t+k} - m) over pairs inside the window, divided by the total token count n
    (m: the mean over all tokens); rho(k) = R(k) / R(0).
  - m_hat: the smallest lag m such that rho(m + 1), ..., rho(m + K) are all below
    c sqrt(log10(n) / n) in absolute value, with K = max(5, ceil(sqrt(log10 n))) and c = 2
    (searched up to ceil(sqrt(n)) + K; if none qualifies, that bound); M = 2 m_hat.
  - flat-top lag window lambda(t) = 1 for |t| <= 1/2, 2 (1 - |t|) for 1/2 < |t| <= 1, else 0;
    g = sum_{|k| <= M} lambda(k / M) R(k); G = sum_{|k| <= M} lambda(k / M) |k| R(k).
  - b = (2 G^2 / D)^(1/3) n^(1/3) with D = (4/3) g^2 (circular/moving block), rounded up,
    at least 1 and at most min(ceil(3 sqrt(n)), ceil(n / 3), the shortest window). A series
    with no significant autocorrelation gets b = 1 (the ordinary bootstrap); g <= 0 (an
    estimate of a negative long-run variance) falls back to ceil(sqrt(n)) within the bounds.

* ``block_bootstrap_means(values, windows, length, n_boot, rng)``: the circular moving-block
  bootstrap within windows (Politis & Romano 1992): a block is ``length`` consecutive tokens
  of one window starting at any of its tokens, wrapping around to the window's start, so
  every token is in exactly ``length`` blocks (no edge under-weighting) and no block crosses
  a window boundary. A resample draws k = ceil(n / length) block starts uniformly among the
  n tokens and takes the mean over its k x length tokens. The same draws serve every row of
  ``values`` (KLD and NLL difference resampled together).

* ``window_bootstrap_means(blocks, n_boot, rng)``: the bootstrap over whole windows, used when
  there are enough windows (``summary.MIN_WINDOWS``).

* ``block_bootstrap_t(values, windows, length, n_boot, rng)``: the 95 % interval from the
  same resamples, studentized (Goetze & Kuensch 1996): with block means B_s (the n circular
  blocks) and k = ceil(n / length), se = sqrt(var(B_s) / k) (population variance over all n
  blocks); each resample's k drawn block means give m* and se* = sqrt(var(drawn) / k), and
  t* = (m* - m) / se* (the circular scheme makes the bootstrap mean of m* exactly m). The
  interval is [m - q_0.975(t*) se, m - q_0.025(t*) se] over the finite t*; se = 0 gives [m, m].
  Studentizing brings the coverage closer to nominal than the percentile interval of m* in
  short, strongly autocorrelated windows (``docs/statistics.md``).

Coverage is checked by simulation in ``tests/metrics/test_metrics_blocks.py`` and stated in
``docs/statistics.md``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

_CELLS = 1 << 22  # block starts drawn per vectorised step (resamples x blocks)


def autocovariance(windows: Sequence[np.ndarray], max_lag: int) -> np.ndarray:
    """R(0..max_lag) pooled within windows around the global mean, divided by total n."""
    n = sum(int(w.size) for w in windows)
    if n == 0:
        return np.zeros(max_lag + 1)
    mean = sum(float(w.sum()) for w in windows) / n
    out = np.zeros(max_lag + 1)
    for w in windows:
        d = np.asarray(w, dtype=np.float64) - mean  # (T_w,)
        size = 1 << max(1, (2 * d.size - 1).bit_length())
        f = np.fft.rfft(d, size)
        ac = np.fft.irfft(f * np.conj(f), size)[: min(max_lag + 1, d.size)]  # lag sums
        out[: ac.size] += ac
    return out / n


def _flat_top(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(a <= 0.5, 1.0, np.where(a <= 1.0, 2.0 * (1.0 - a), 0.0))


def _bandwidth(rho: np.ndarray, n: int, k_n: int, m_max: int) -> int:
    """m_hat: the first lag after which K consecutive autocorrelations are insignificant."""
    crit = 2.0 * math.sqrt(math.log10(n) / n)
    small = np.abs(rho[1:]) < crit  # small[j] is lag j + 1
    for m in range(m_max + 1):
        if m + k_n > small.size:
            break
        if small[m:m + k_n].all():
            return m
    return m_max


def block_length(windows: Sequence[np.ndarray]) -> int:
    """Politis-White automatic block length for the circular / moving-block bootstrap."""
    sizes = [int(w.size) for w in windows if w.size]
    n = sum(sizes)
    if n < 4:
        return 1
    upper = max(1, min(math.ceil(3 * math.sqrt(n)), math.ceil(n / 3), min(sizes)))
    k_n = max(5, math.ceil(math.sqrt(math.log10(n))))
    m_max = math.ceil(math.sqrt(n)) + k_n
    r = autocovariance(windows, 2 * m_max + k_n)
    if r[0] <= 0:
        return 1
    m_hat = _bandwidth(r / r[0], n, k_n, m_max)
    big_m = 2 * m_hat
    if big_m == 0:
        return 1
    k = np.arange(1, big_m + 1)
    lam = _flat_top(k / big_m)
    g = r[0] + 2.0 * float(np.sum(lam * r[1:big_m + 1]))
    cap_g = 2.0 * float(np.sum(lam * k * r[1:big_m + 1]))
    if g <= 0:
        return int(min(upper, max(1, math.ceil(math.sqrt(n)))))
    b = (2.0 * cap_g * cap_g / ((4.0 / 3.0) * g * g)) ** (1.0 / 3.0) * n ** (1.0 / 3.0)
    return int(min(upper, max(1, math.ceil(b))))


def circular_block_sums(values: np.ndarray, windows: Sequence[int], length: int) -> np.ndarray:
    """Sum of every block: ``values`` (R, n) with windows laid end to end (sizes ``windows``);
    returns (R, n), entry (r, s) = sum of the ``length`` tokens from s, wrapping in its window."""
    out = np.empty_like(values, dtype=np.float64)
    start = 0
    for size in windows:
        seg = values[:, start:start + size].astype(np.float64)  # (R, T_w)
        reps = -(-length // size) + 1
        ext = np.concatenate([seg] * reps, axis=1)[:, : size + length]  # (R, T_w + L)
        cs = np.concatenate([np.zeros((seg.shape[0], 1)), np.cumsum(ext, axis=1)], axis=1)
        out[:, start:start + size] = cs[:, length:length + size] - cs[:, :size]
        start += size
    return out


def block_bootstrap_means(values: np.ndarray, windows: Sequence[int], length: int,
                          n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Circular moving-block bootstrap means within windows: (R, n_boot) for ``values`` (R, n)."""
    n = values.shape[1]
    sums = circular_block_sums(values, windows, length)  # (R, n)
    k = -(-n // length)
    out = np.empty((values.shape[0], n_boot))
    step = max(1, _CELLS // k)
    for lo in range(0, n_boot, step):
        m = min(step, n_boot - lo)
        starts = rng.integers(0, n, size=(m, k))  # (m, k)
        out[:, lo:lo + m] = sums[:, starts].sum(axis=2) / (k * length)
    return out


def block_bootstrap_t(values: np.ndarray, windows: Sequence[int], length: int, n_boot: int,
                      rng: np.random.Generator, level: float = 0.95) -> np.ndarray:
    """Studentized circular moving-block bootstrap interval of the mean of every row of
    ``values`` (R, n): (R, 2) low, high (see the module docstring)."""
    r, n = values.shape
    means = circular_block_sums(values, windows, length) / length  # (R, n) block means
    k = -(-n // length)
    m_hat = values.astype(np.float64).mean(axis=1)  # (R,)
    se_hat = np.sqrt(means.var(axis=1) / k)  # (R,)
    t = np.empty((r, n_boot))
    step = max(1, (_CELLS // 4) // k)
    for lo in range(0, n_boot, step):
        m = min(step, n_boot - lo)
        drawn = means[:, rng.integers(0, n, size=(m, k))]  # (R, m, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            t[:, lo:lo + m] = (drawn.mean(axis=2) - m_hat[:, None]) / np.sqrt(drawn.var(axis=2) / k)
    a = (1.0 - level) / 2.0
    out = np.repeat(m_hat[:, None], 2, axis=1)
    for i in range(r):
        ok = t[i][np.isfinite(t[i])]
        if se_hat[i] > 0 and ok.size:
            q_lo, q_hi = np.quantile(ok, [a, 1.0 - a])
            out[i] = (m_hat[i] - q_hi * se_hat[i], m_hat[i] - q_lo * se_hat[i])
    return out


def window_bootstrap_means(blocks: np.ndarray, n_boot: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap over whole windows: ``blocks`` (3, n_blocks) = per-window KLD sum, NLL
    difference sum, token count; each resample draws n_blocks windows with replacement and
    takes the token-weighted means (n_boot,) of KLD and NLL difference."""
    n_blocks = blocks.shape[1]
    step = max(1, _CELLS // n_blocks)
    kld = np.empty(n_boot)
    diff = np.empty(n_boot)
    for lo in range(0, n_boot, step):
        m = min(step, n_boot - lo)
        idx = rng.integers(0, n_blocks, size=(m, n_blocks))
        # sum over drawn blocks = weighted count per block; bincount on flattened rows
        counts = np.bincount((idx + n_blocks * np.arange(m)[:, None]).ravel(),
                             minlength=m * n_blocks).reshape(m, n_blocks).astype(np.float64)
        tot = counts @ blocks.T  # (m, 3)
        kld[lo:lo + m] = tot[:, 0] / tot[:, 2]
        diff[lo:lo + m] = tot[:, 1] / tot[:, 2]
    return kld, diff


def series_block_length(rows: np.ndarray, sizes: Sequence[int]) -> int:
    """The largest Politis-White block length over the rows of ``rows`` (R, n), windows laid
    end to end with ``sizes``."""
    bounds = np.cumsum([0, *sizes])
    return max(block_length([row[a:b] for a, b in itertools.pairwise(bounds)]) for row in rows)
