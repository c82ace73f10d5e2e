"""The noise model behind :func:`quantfid.metrics.topk.topk_fidelity` (internal).

Unknown log-ratios ln q(v) - ln p(v) = c + e(v), e ~ N(0, s^2) i.i.d. over ids, each capped
where the server's top-K says q(v) <= q_K. ``rest_bound`` is the rigorous minimum of the
unknown terms (no noise, water-filling under the caps); ``rest_model`` their expectation;
``censored_var`` fits s^2 to the known and the censored log-ratios. Float64 throughout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

# relative error of a server's probabilities (float32 log-softmax and float32 values): the
# bound allows Q_U this much larger than 1 - sum(returned), so rounding cannot break it
ROUNDING = 2.0**-22
_ITERS = 60
_EM_ITERS = 60  # censored-normal fit: at most this many EM steps (stops at 1e-9)
_TOBIT_MIN = 30  # observed ids a row needs for the censored fit (fewer: plain variance)


@dataclass
class Rest:
    """The unknown part of each row: B entries (ragged, by row) and the tail bucket."""

    rows: np.ndarray      # (nb,) row of each B entry
    p: np.ndarray         # (nb,) p(b)
    log_cap: np.ndarray   # (nb,) ln of each B entry's cap: q_K of its row, or 0 (no cap)
    p_tail: np.ndarray    # (n,) P mass of the tail (next token taken out when exact)
    q_u: np.ndarray       # (n,) Q mass over B and the tail, exact
    q_out: np.ndarray     # (n,) Q mass the server returned outside the kept ids (in the tail)
    n: int
    slack: np.ndarray | None = None  # (n,) rounding allowance on Q_U (the bound uses Q_U + it)


def _root(g: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], lo: np.ndarray,
          hi: np.ndarray) -> np.ndarray:
    """Root of the increasing vectorised g (returning value and slope) per row, bracketed by
    g(lo) <= 0 <= g(hi): Newton steps kept inside the bracket (bisection otherwise). Where
    g(hi) < 0 there is no root and hi is returned."""
    none = g(hi)[0] < 0
    x = np.where(none, hi, lo)
    for _ in range(_ITERS):
        gx, dg = g(x)
        up = gx > 0
        hi = np.where(up, x, hi)
        lo = np.where(up | none, lo, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = x - gx / dg
        ok = np.isfinite(step) & (step >= lo) & (step <= hi)
        x_new = np.where(none, x, np.where(ok, step, 0.5 * (lo + hi)))
        done = float(np.max(np.abs(x_new - x), initial=0.0)) < 1e-13
        x = x_new
        if done:
            break
    return x


def _lam(x: np.ndarray) -> np.ndarray:
    """Inverse Mills ratio phi(x) / Phi(x)."""
    return np.exp(-0.5 * x**2 - 0.5 * np.log(2 * np.pi) - special.log_ndtr(x))


def _mass_at(r: Rest, c: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[Q(B)] + E[q_T] per row, and its derivative in c, for ln q = ln p + c + e,
    e ~ N(0, s^2), each B id's e truncated at its cap (q(b) <= q_K)."""
    sb = s[r.rows]
    mu = np.log(r.p) + c[r.rows]
    cap = r.log_cap
    eb = np.exp(np.minimum(mu, cap))  # no noise: q(b) = min(q_K, p e^c)
    db = np.where(mu < cap, eb, 0.0)
    noisy = sb > 0
    if noisy.any():
        sn = sb[noisy]
        z = (cap[noisy] - mu[noisy]) / sn
        # E[e^e | e <= tau] = exp(s^2/2) Phi(z - s) / Phi(z) (= exp(s^2/2) for z > 9)
        near = z <= 9.0
        ratio, slope = np.ones(len(z)), np.ones(len(z))
        zn, sn_n = z[near], sn[near]
        ratio[near] = np.exp(special.log_ndtr(zn - sn_n) - special.log_ndtr(zn))
        slope[near] = 1.0 - (_lam(zn - sn_n) - _lam(zn)) / sn_n
        eb[noisy] = np.exp(mu[noisy] + 0.5 * sn**2) * ratio
        db[noisy] = eb[noisy] * slope
    tail = r.p_tail * np.exp(c + 0.5 * s**2)
    return np.bincount(r.rows, eb, r.n) + tail, np.bincount(r.rows, db, r.n) + tail


def _solve_c(r: Rest, s: np.ndarray) -> np.ndarray:
    """c per row with E[Q(B)] + E[q_T] = Q_U."""
    p_u = np.bincount(r.rows, r.p, r.n) + r.p_tail
    active = p_u > 0
    q_u = np.maximum(r.q_u, 1e-300)
    c0 = np.log(q_u) - np.log(np.where(active, p_u, 1.0)) - 0.5 * s**2  # no cap binding
    # the tail alone takes all of Q_U at c0 + ln(P_U / p_T); without a tail, B at its caps
    room = np.log(np.where(active, p_u, 1.0)) - np.log(np.maximum(r.p_tail, 1e-300))
    lo, hi = c0 - 1e-9, c0 + np.minimum(room, 60.0) + 1.0

    def g(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, dm = _mass_at(r, c, s)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (np.where(active, np.log(m) - np.log(q_u), 0.0),
                    np.where(active, dm / m, 1.0))

    return np.where(active, _root(g, lo, hi), 0.0)


def rest_bound(r: Rest) -> np.ndarray:
    """min over q(b) <= q_K, q_T >= q_out, sum = Q_U of sum_B p ln(p/q) + p_T ln(p_T/q_T)."""
    s0 = np.zeros(r.n)
    if r.slack is not None:  # rigorous for rounded inputs: the largest Q_U they allow
        r = Rest(r.rows, r.p, r.log_cap, r.p_tail, r.q_u + r.slack, r.q_out, r.n)
    c = _solve_c(r, s0)
    q_t = r.p_tail * np.exp(c)
    low_t = q_t < r.q_out  # the tail must hold what the server returned there
    if low_t.any():
        pinned = Rest(r.rows, r.p, r.log_cap, np.zeros(r.n), r.q_u - r.q_out, r.q_out, r.n)
        c = np.where(low_t, _solve_c(pinned, s0), c)
        q_t = np.where(low_t, r.q_out, q_t)
    ln_qb = np.minimum(np.log(r.p) + c[r.rows], r.log_cap)
    b_terms = np.bincount(r.rows, r.p * (np.log(r.p) - ln_qb), r.n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_terms = np.where(r.p_tail > 0, r.p_tail * (np.log(r.p_tail)
                                                     - np.log(np.maximum(q_t, 1e-300))), 0.0)
    return b_terms + t_terms


@dataclass
class Samples:
    """The reference's tail samples (PPS draws from P_T): row, ln p, ln q (NaN unknown),
    whether q is known, the cap on q where it is not, and the number per row."""

    rows: np.ndarray
    lp: np.ndarray
    lq: np.ndarray
    found: np.ndarray
    log_cap: np.ndarray
    count: np.ndarray


def rest_model(r: Rest, s2: np.ndarray, smp: Samples) -> np.ndarray:
    """Expected sum_B p ln(p/q) + sum_T p ln(p/q) under the log-ratio noise model; where
    the row has tail samples, the tail is p_T ln(p_T / q_T) plus p_T times the sample mean of
    r - 1 - ln r (as the compact store), each sample's term exact where the server returned
    its q and its expectation given that q is below the cap where it did not."""
    s = np.sqrt(s2)
    c = _solve_c(r, s)
    cb, sb = c[r.rows], s[r.rows]
    tau = r.log_cap - np.log(r.p) - cb
    mean_e, cut = _trunc_mean(tau, sb)
    b_terms = np.bincount(r.rows, r.p * (-cb - mean_e + cut), r.n)
    tail = -c * r.p_tail
    has = (smp.count > 0) & (r.p_tail > 0)
    if has.any():
        ln_pq = 0.5 * s**2 + c  # ln(q_T / p_T) under the model: E[q_T] = p_T e^(c + s^2/2)
        sr = smp.rows
        with np.errstate(divide="ignore", invalid="ignore"):
            known_lr = (smp.lq - smp.lp) - ln_pq[sr]  # ln r = ln(q/q_T) - ln(p/p_T)
            t_k = np.expm1(known_lr) - known_lr
            tau_s = smp.log_cap - smp.lp - c[sr]
            m_e, cut_s = _trunc_mean(tau_s, s[sr])
            z = tau_s / s[sr]
            ratio = np.where(s[sr] > 0, np.exp(special.log_ndtr(z - s[sr]) - special.log_ndtr(z)),
                             np.exp(-cut_s))  # E[e^e | e <= tau] / e^(s^2/2)
            e_lr = c[sr] + m_e - cut_s - ln_pq[sr]
            t_u = np.exp(c[sr] + 0.5 * s[sr] ** 2 - ln_pq[sr]) * ratio - 1 - e_lr
            terms = np.where(smp.found, t_k, t_u)
        within = np.bincount(sr, np.where(np.isfinite(terms), terms, 0.0), r.n) \
            / np.maximum(smp.count, 1)
        tail = np.where(has, -r.p_tail * ln_pq + r.p_tail * within, tail)
    return b_terms + tail


def _trunc_mean(tau: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """E[e | e <= tau] for e ~ N(0, s^2) (-s phi(z) / Phi(z), z = tau / s), and for s = 0 the
    part cut off by the cap, max(-tau, 0) (q = min(q_K, p e^c))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = tau / s
        mean_e = np.where(s > 0, -s * _lam(z), 0.0)
        cut = np.where(s > 0, 0.0, np.maximum(-tau, 0.0))
    return np.where(np.isfinite(mean_e), mean_e, 0.0), cut


def plain_var(r: np.ndarray, d: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the sample variance (ddof 1) of ``d`` (0 with fewer than two) and the count."""
    m = np.bincount(r, minlength=n).astype(np.float64)
    mean = np.bincount(r, d, n) / np.maximum(m, 1.0)
    ss = np.bincount(r, (d - mean[r]) ** 2, n)
    return np.where(m >= 2, ss / np.maximum(m - 1.0, 1.0), 0.0), m


def censored_var(obs_r: np.ndarray, obs_d: np.ndarray, cen_r: np.ndarray,
                  cen_tau: np.ndarray, n: int) -> np.ndarray:
    """Per row: the variance of ln q - ln p fitted to the observed values and the censored
    ones (ids the server did not return: ln q - ln p < tau, tau = ln q_K - ln p), as a normal
    by EM (Tobit); the server's top-K selects the ids it returns by their q, so the observed
    values alone understate the spread. Rows with fewer than _TOBIT_MIN observed: NaN."""
    s2, m_o = plain_var(obs_r, obs_d, n)
    fit = m_o >= _TOBIT_MIN
    if not fit.any():
        return np.full(n, np.nan)
    keep_o, keep_c = fit[obs_r], fit[cen_r]  # only the rows that get the fit
    obs_r, obs_d, cen_r, cen_tau = obs_r[keep_o], obs_d[keep_o], cen_r[keep_c], cen_tau[keep_c]
    n_all = m_o + np.bincount(cen_r, minlength=n)
    c = np.bincount(obs_r, obs_d, n) / np.maximum(m_o, 1.0)
    s2 = np.maximum(s2, 1e-12)
    sum_d, sum_d2 = np.bincount(obs_r, obs_d, n), np.bincount(obs_r, obs_d**2, n)
    for _ in range(_EM_ITERS):
        s = np.sqrt(s2)
        a = (cen_tau - c[cen_r]) / s[cen_r]
        lam = _lam(a)
        e1 = c[cen_r] - s[cen_r] * lam  # E[x | x < tau] and E[x^2 | x < tau]
        e2 = s2[cen_r] * (1.0 - a * lam - lam**2) + e1**2
        c_new = (sum_d + np.bincount(cen_r, e1, n)) / np.maximum(n_all, 1.0)
        s2_new = np.maximum((sum_d2 + np.bincount(cen_r, e2, n)) / np.maximum(n_all, 1.0)
                            - c_new**2, 1e-12)
        done = float(np.max(np.abs(s2_new - s2), initial=0.0)) < 1e-9
        c, s2 = c_new, s2_new
        if done:
            break
    s2 = s2 * n_all / np.maximum(n_all - 1.0, 1.0)
    return np.where(fit, s2, np.nan)
