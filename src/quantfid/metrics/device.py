"""Chunk reductions as torch ops, for logits that live on a GPU.

The same definitions as the numba kernels (:mod:`quantfid.metrics.compact_kernel`,
:mod:`quantfid.metrics.kernel`), written with torch so that they run where the logits are:
the (P, V) logits of a chunk never leave the device; only per-token results (73 bytes per
token: nine float64 metrics and same-top-1) or compact rows (8 bytes per kept id or tail
sample, 24 per row) are copied to the host. Every function
returns a :class:`HostResult` that says how many bytes crossed. They run on CPU tensors too
(that is how the tests check them against the numba kernels).

Numerics: the passes over V are float32 (logits of any float dtype are widened to float32;
max-shifted exponentials, sums with torch's float32 reductions), everything per row or per
kept id is float64 (log-normaliser, gathered log-probs, KL sums over the kept entries). The
log-normaliser's float32 rounding (~1e-7 relative) shifts every log-prob of a row alike, so
KL is off by a few 1e-7 nats at most against the float64 CPU kernels (SmolLM2 logits: mean
KLD within ~1e-5 relative; benchmarks/bench_store.py --real). The full comparison takes the
logit difference r - x minus its row offset exactly (``_shifted_difference``) and sums with
torch's tree reductions (a float32 einsum dot product loses ~1e-4). Device memory beyond the
input: about 4 P V bytes for the compact metrics (the exponentials), 12 P V for the compact
rows (a float64 cumulative sum for the tail samples), 16-24 P V for the full comparison.
Ties in a top-k rank the lower id first, as on the CPU (``top_exact``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from quantfid.metrics.inputs import raise_bad

if TYPE_CHECKING:
    from quantfid.store.rows import CompactRows

F64 = torch.float64
_LN2 = math.log(2.0)


@dataclass(frozen=True)
class HostResult:
    """Arrays copied to the host (by name) and how many bytes the copies moved."""

    arrays: dict[str, np.ndarray]
    nbytes: int


def fetch(tensors: dict[str, torch.Tensor], widen: tuple[str, ...] = ()) -> HostResult:
    """Copy ``tensors`` to the host; the names in ``widen`` become int64 after the copy."""
    out = {}
    nbytes = 0
    for k, t in tensors.items():
        nbytes += t.numel() * t.element_size()
        a = t.detach().cpu().numpy()
        out[k] = a.astype(np.int64) if k in widen else a
    return HostResult(out, nbytes)


def _check_finite(x: torch.Tensor, what: str, other: torch.Tensor | None = None) -> None:
    """QuantfidError naming the first row with a NaN or infinity (one row comes to the host)."""
    s = x.sum(1) if other is None else x.sum(1) + other.sum(1)  # (P,): inf/NaN if any is
    bad = ~torch.isfinite(s)
    if bool(bad.any()):
        i = int(torch.argmax(bad.to(torch.int8)))
        for name, rows in ((what, x), ("reference", other)):
            if rows is not None:
                row = rows[i:i + 1].float().cpu().numpy()
                if not np.isfinite(row).all():
                    raise_bad(row, np.ones(1, np.int8), name, offset=i)
        raise_bad(x[i:i + 1].float().cpu().numpy(), np.ones(1, np.int8), what, offset=i)


def _tie_order(vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-sort top-k (values, ids) by (value descending, id ascending)."""
    idx, perm = idx.sort(dim=1)
    vals = vals.gather(1, perm)
    vals, perm = vals.sort(dim=1, descending=True, stable=True)
    return vals, idx.gather(1, perm)


def top_exact(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest values of each row of ``x`` (P, V) and their ids, sorted by (value
    descending, id ascending), ties at the k-th place going to the lowest ids (as the CPU
    kernels; ``torch.topk`` alone leaves that choice open, and bfloat16 logits tie often)."""
    vals, idx = _tie_order(*torch.topk(x, k, dim=1))  # (P, k)
    vk = vals[:, -1:]  # (P, 1)
    ids = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)  # exact to 2**24
    key = torch.where(x == vk, -ids, -math.inf)  # (P, V): the ids tied with the k-th value
    tied = torch.topk(key, k, dim=1).indices  # (P, k) lowest tied ids, ascending
    n_gt = (vals > vk).sum(1, keepdim=True)  # (P, 1): above the tie, exactly in the top k
    pos = torch.arange(k, device=x.device)[None, :]
    from_tie = pos >= n_gt
    idx = torch.where(from_tie, tied.gather(1, (pos - n_gt).clamp(min=0)), idx)
    return torch.where(from_tie, vk, vals), idx


def _targets(targets: np.ndarray, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.from_numpy(np.asarray(targets, np.int64)).to(dev)
    return t.clamp(min=0)[:, None], t >= 0  # (P, 1) gather index, (P,) known


def compact_rows_torch(logits: torch.Tensor, targets: np.ndarray, *, mass: float, cap: int,
                       min_k: int, tail_samples: int, rng: np.random.Generator) -> HostResult:
    """``quantfid.store.compact.compact_rows`` on the logits' device; arrays by CompactRows
    field (ids int64 on the host, int32 on the wire; kept log-probs float32, as stored)."""
    x = logits.detach().float()  # (P, V)
    n, vocab = x.shape
    cap, dev = min(cap, vocab), x.device
    min_k = min(min_k, cap)
    _check_finite(x, "logits")
    m = x.amax(1, keepdim=True)  # (P, 1)
    e = torch.exp(x - m)  # (P, V) float32
    z = e.sum(1).to(F64)  # (P,)
    lse = m.squeeze(1).to(F64) + z.log()  # (P,)
    vals, idx = top_exact(x, cap)  # (P, cap)
    lp = vals.to(F64) - lse[:, None]  # (P, cap)
    cum = lp.exp().cumsum(1)
    counts = ((cum < mass).sum(1) + 1).clamp(min_k, cap) if mass < 1 else \
        torch.full((n,), cap, dtype=torch.int64, device=dev)  # (P,)
    keep = torch.arange(cap, device=dev)[None, :] < counts[:, None]  # (P, cap)
    e.scatter_(1, torch.where(keep, idx, idx[:, :1]), 0.0)  # e: the tail's exponentials
    log_tail = e.sum(1).to(F64).log() - z.log()  # direct sum; -inf when empty
    gi, known = _targets(targets, dev)
    tlp = torch.where(known, x.gather(1, gi).squeeze(1).to(F64) - lse, math.nan)
    floor = math.log1p(-mass) if mass < 1 else -math.inf
    need = log_tail > floor if tail_samples else torch.zeros(n, dtype=torch.bool, device=dev)
    s_ids, s_lp = _sample_tail(x, e, lse, need, tail_samples, rng)
    out = {"counts": counts.to(torch.int32), "ids": idx[keep].to(torch.int32),
           "logp": lp[keep].to(torch.float32), "log_tail": log_tail, "target_logp": tlp,
           "tail_counts": (need.to(torch.int32) * tail_samples),
           "tail_ids": s_ids.reshape(-1).to(torch.int32), "tail_logp": s_lp.reshape(-1)}
    return fetch(out, widen=("ids", "tail_ids"))


def _sample_tail(x: torch.Tensor, e: torch.Tensor, lse: torch.Tensor, need: torch.Tensor,
                 m: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Systematic PPS samples (ids (S, m), float32 log-probs) of the rows in ``need``, from the
    tail exponentials ``e`` (kept entries zeroed); one uniform per sampled row from ``rng``."""
    rows = need.nonzero().squeeze(1)  # (S,)
    u = torch.from_numpy(np.asarray(rng.random(len(rows)), np.float64)).to(x.device)
    if len(rows) == 0 or m == 0:
        return (torch.zeros((len(rows), m), dtype=torch.int64, device=x.device),
                torch.zeros((len(rows), m), dtype=torch.float32, device=x.device))
    tp = e if len(rows) == len(e) else e[rows]  # (S, V)
    best = tp.argmax(1, keepdim=True)  # (S, 1): the float edge at the total
    cum = tp.cumsum(1, dtype=F64)  # (S, V)
    pos = (torch.arange(m, dtype=F64, device=x.device)[None, :] + u[:, None]) / m * cum[:, -1:]
    pick = torch.searchsorted(cum, pos, right=True).clamp_max(x.shape[1] - 1)  # (S, m)
    pick = torch.where(tp.gather(1, pick) > 0, pick, best)
    lp = x[rows[:, None], pick].to(F64) - lse[rows][:, None]  # (S, m)
    return pick, lp.to(torch.float32)


def _pad(offsets: np.ndarray, ids: np.ndarray, vals: np.ndarray, width: int, dev: torch.device
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ragged rows -> (P, width) ids (padding: the row's first id, or 0), float64 values and
    a validity mask, on ``dev``."""
    n = len(offsets) - 1
    counts = np.diff(offsets)
    rows = np.repeat(np.arange(n), counts)
    cols = np.arange(len(ids)) - offsets[:-1][rows]
    first = np.zeros(n, np.int64)
    first[counts > 0] = ids[offsets[:-1][counts > 0]]
    pid = np.repeat(first[:, None], width, axis=1)  # (P, width)
    pv = np.zeros((n, width), np.float64)
    valid = np.zeros((n, width), bool)
    pid[rows, cols] = ids
    pv[rows, cols] = vals
    valid[rows, cols] = True
    return (torch.from_numpy(pid).to(dev), torch.from_numpy(pv).to(dev),
            torch.from_numpy(valid).to(dev))


def _bucket(w: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
            ok: torch.Tensor | None = None) -> torch.Tensor:
    """w (a - b) where w > 0 (and ``ok``), else 0."""
    pos = w > 0 if ok is None else (w > 0) & ok
    return torch.where(pos, w * (a - b), 0.0)


def compact_metrics_torch(ref: CompactRows, logits: torch.Tensor, targets: np.ndarray, *,
                          sampled: bool = True) -> HostResult:
    """``quantfid.store.compact.compact_metrics`` on the logits' device; TokenMetrics fields."""
    x = logits.detach().float()  # (P, V)
    dev = x.device
    counts = np.asarray(ref.counts, np.int64)
    _check_finite(x, "quant logits")
    kid, klp, kok = _pad(ref.offsets, np.asarray(ref.ids, np.int64),
                         np.asarray(ref.logp, np.float64), int(counts.max(initial=1)), dev)
    m = x.amax(1, keepdim=True)  # (P, 1)
    e = torch.exp(x - m)  # (P, V) float32
    lnz = e.sum(1).to(F64).log()  # (P,)
    has = torch.from_numpy(counts > 0).to(dev)
    # zero the kept ids (padding repeats a row's first id; rows with none write e[:, 0] back)
    e.scatter_(1, kid, torch.where(has[:, None], 0.0, e.gather(1, kid)))
    shift = m.squeeze(1).to(F64) + lnz  # ln q(v) = x(v) - shift
    lq_t = e.sum(1).to(F64).log() - lnz  # (P,) quant tail, direct sum
    lp_t = torch.from_numpy(np.asarray(ref.log_tail, np.float64)).to(dev)
    lq = x.gather(1, kid).to(F64) - shift[:, None]  # (P, k)
    p, q = klp.exp(), lq.exp()
    lm = torch.logaddexp(klp, lq) - _LN2
    p_t, q_t = lp_t.exp(), lq_t.exp()
    lm_t = torch.logaddexp(lp_t, lq_t) - _LN2
    kld = _bucket(p, klp, lq, kok).sum(1) + _bucket(p_t, lp_t, lq_t)
    if sampled and len(ref.tail_ids):
        kld = kld + p_t * _tail_estimate(ref, x, shift, lq_t, lp_t)
    rkld = _bucket(q, lq, klp, kok).sum(1) + _bucket(q_t, lq_t, lp_t)
    jsd = 0.5 * ((_bucket(p, klp, lm, kok) + _bucket(q, lq, lm, kok)).sum(1)
                 + _bucket(p_t, lp_t, lm_t) + _bucket(q_t, lq_t, lm_t))
    tlp = torch.from_numpy(np.asarray(ref.target_logp, np.float64)).to(dev)
    gi, known = _targets(targets, dev)
    lqt = x.gather(1, gi).squeeze(1).to(F64) - shift
    out = {"kld": kld, "rkld": rkld, "jsd": jsd, "nll_ref": -tlp,
           "nll_q": torch.where(known, -lqt, math.nan),
           "dp": torch.where(known, lqt.exp() - tlp.exp(), math.nan),
           "ref_top1_prob": torch.where(has, klp[:, 0].exp(), math.nan),
           "same_top1": has & (kid[:, 0] == x.argmax(1))}
    out.update(_overlaps(torch.where(kok, kid, -1), torch.from_numpy(counts).to(dev), x))
    return fetch(out)


def _tail_estimate(ref: CompactRows, x: torch.Tensor, shift: torch.Tensor, lq_t: torch.Tensor,
                   lp_t: torch.Tensor) -> torch.Tensor:
    """(P,) mean over a row's tail samples of r - 1 - ln r (0 without samples)."""
    tc = np.asarray(ref.tail_counts, np.int64)
    sid, slp, sok = _pad(ref.tail_offsets, np.asarray(ref.tail_ids, np.int64),
                         np.asarray(ref.tail_logp, np.float64), int(tc.max(initial=1)), x.device)
    ln_r = ((x.gather(1, sid).to(F64) - shift[:, None]) - lq_t[:, None]) - (slp - lp_t[:, None])
    term = torch.where(sok, torch.expm1(ln_r) - ln_r, 0.0).sum(1)
    tct = torch.from_numpy(tc).to(x.device)
    return torch.where(tct > 0, term / tct.clamp(min=1), 0.0)


def _overlaps(ref_ids: torch.Tensor, ref_counts: torch.Tensor, x: torch.Tensor
              ) -> dict[str, torch.Tensor]:
    """top5/top10 overlap: |first kk of ref_ids & top kk of x| / kk, kk = min(k, count, V)
    (NaN when kk = 0); ref_ids (P, >= 1), -1 where invalid."""
    kq = min(10, x.shape[1])
    _, qi = top_exact(x, kq)  # (P, kq)
    r = torch.full((len(x), 10), -1, dtype=torch.int64, device=x.device)
    w = min(10, ref_ids.shape[1])
    r[:, :w] = ref_ids[:, :w]
    out = {}
    for k in (5, 10):
        kk = torch.clamp(ref_counts, max=min(k, kq))  # (P,)
        a = torch.arange(10, device=x.device)[None, :] < kk[:, None]  # (P, 10)
        b = torch.arange(kq, device=x.device)[None, :] < kk[:, None]  # (P, kq)
        hit = ((r[:, :, None] == qi[:, None, :]) & a[:, :, None] & b[:, None, :]).any(2)
        inter = hit.sum(1).to(F64)
        out[f"top{k}_overlap"] = torch.where(kk > 0, inter / kk.clamp(min=1), math.nan)
    return out


def _shifted_difference(r: torch.Tensor, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """(r - x) - float32(c) in float32, rounded once as a whole: Knuth's TwoSum gives r - x as
    s + err exactly, and s - c is exact when the difference is near its row's offset c (a
    log-prob reference against quant logits differ by ~30 in every entry, which a plain
    float32 difference would round at 2e-6)."""
    s = r - x  # (P, V)
    bv = s - r  # the part of s that came from -x
    err = r - (s - bv)  # (r - av), then the rounding error of s: (r - av) + (-x - bv)
    err -= x + bv
    return s.sub_(c.float()).add_(err)


def full_metrics_torch(ref_rows: Any, logits: torch.Tensor, targets: np.ndarray | None, *,
                       extras: bool = True) -> HostResult:
    """``quantfid.metrics.token.token_metrics`` on the logits' device (the reference rows are
    copied there in float32): TokenMetrics fields, float64 per token."""
    x = logits.detach().float()  # (P, V)
    if not isinstance(ref_rows, torch.Tensor):
        a = np.asarray(ref_rows)  # a store's rows are read-only memory maps: copy to read
        ref_rows = torch.from_numpy(a if a.flags.writeable else a.copy())
    r = ref_rows.to(x.device, torch.float32)  # (P, V)
    _check_finite(x, "quant logits", r)
    mr, mq = r.amax(1, keepdim=True), x.amax(1, keepdim=True)  # (P, 1)
    c = mr.to(F64) - mq.to(F64)  # (P, 1), exact
    d = _shifted_difference(r, x, c)  # (P, V) (r - x) - c to ~1 float32 rounding of itself
    w = torch.exp(r - mr)  # (P, V)
    zr = w.sum(1).to(F64)
    sr = w.mul_(d).sum(1).to(F64)  # torch's tree sums (a float32 einsum/bmm dot loses 1e-4)
    torch.exp(x - mq, out=w)  # w now holds the quant's exponentials
    zq = w.sum(1).to(F64)
    sq = w.mul_(d).sum(1).to(F64)
    lzr, lzq = zr.log(), zq.log()
    c_lo = (c - c.float().to(F64)).squeeze(1)  # what float32 c left out
    # ln p - ln q = (r - x) - c - ln Zr + ln Zq, Zr = sum exp(r - mr), Zq likewise
    out = {"kld": (sr / zr - c_lo - lzr + lzq).clamp(min=0.0),
           "rkld": (-sq / zq + c_lo + lzr - lzq).clamp(min=0.0),
           "same_top1": r.argmax(1) == x.argmax(1), "ref_top1_prob": 1.0 / zr}
    if targets is not None:
        gi, _ = _targets(targets, x.device)
        a = lzr - (r.gather(1, gi).squeeze(1).to(F64) - mr.squeeze(1).to(F64))
        b = lzq - (x.gather(1, gi).squeeze(1).to(F64) - mq.squeeze(1).to(F64))
        out.update({"nll_ref": a, "nll_q": b, "dp": torch.exp(-b) - torch.exp(-a)})
    if extras:
        lp = r - (mr + lzr[:, None].float())  # (P, V)
        lq = x - (mq + lzq[:, None].float())  # (P, V)
        lm = torch.logaddexp(lp, lq) - _LN2
        js = (lp.exp() * (lp - lm) + lq.exp() * (lq - lm)).sum(1).to(F64)
        out["jsd"] = (0.5 * js).clamp(min=0.0)
        kk = min(10, x.shape[1])
        _, ri = top_exact(r, kk)
        out.update(_overlaps(ri, torch.full((len(x),), kk, device=x.device), x))
    return fetch(out)
