"""Compact reference store: per token the top-k reference log-probs, one exact tail bucket,
and a small sample of the tail.

Per scored token t the store keeps

- the ``k_t`` most probable vocabulary ids of the reference P and their log-probs, sorted by
  decreasing probability (ties: lower id first, as ``argmax``), where ``k_t`` is the
  smallest k whose mass reaches ``mass`` (default 1 - 1e-4), clamped to ``[min_k, cap]``
  (defaults 10 and 256; ``min_k = 10`` keeps top-5/top-10 overlap exact);
- ``ln p_T``, the log of the remaining tail mass ``p_T = 1 - sum_top p``, computed as a
  log-sum-exp over the tail entries (never as ``1 - sum``);
- when the cap binds (``p_T > 1 - mass``), ``tail_samples`` (default 32) tail ids drawn
  from P_T by systematic PPS sampling (seeded ``rng``) with their log-probs;
- the reference log-prob of the text's next token, exactly, so NLL(ref), PPL(ref) and
  dp = p_Q(next) - p_P(next) are exact (never approximated through the tail).

KL divergence, nats, direction KL(P || Q) as llama.cpp. The tail as one bucket gives::

    KL_c = sum_{v in top} p(v) (ln p(v) - ln q(v)) + p_T (ln p_T - ln q_T),
    ln q_T = logsumexp_{v not in top} ln q(v)      (stable; q from a float64 log-softmax).

Error bound. Merging the tail into one bucket is a coarse-graining, so by the log-sum
inequality ``KL_c <= KL``, and the gap is exactly the tail's own divergence::

    KL - KL_c = p_T * KL(P_T || Q_T)  >= 0,

where P_T, Q_T are P and Q conditioned on the tail. If every tail token's log-ratio is
bounded, ``|ln p(v) - ln q(v)| <= eps_T`` for v in the tail, then ``|ln p_T - ln q_T| <=
eps_T`` too, every conditional log-ratio is within ``2 eps_T``, and therefore::

    0 <= KL - KL_c <= 2 * eps_T * p_T  <=  2 * eps_T * (1 - mass)   (when k_t < cap).

Where the mass target is reached the gap is at most 2e-4 * eps_T nats per token. Small
models have flat tails, though: SmolLM2-135M needs ~16,000 ids for 1 - 1e-4, so the cap
binds and p_T is a few percent (``tail_mass()`` / ``tail_bound(eps)`` report it). There the
stored tail sample estimates the gap: with ``r = q_T(v) / p_T(v)``,
``KL(P_T || Q_T) = E_{v ~ P_T}[r - 1 - ln r]`` (as ``E[r] = 1``), estimated by the sample
mean (unbiased, every term >= 0, relative error independent of how small KL is). The
reported ``kld`` is ``KL_c + p_T * estimate``; ``metrics_against(..., tail="bucket")``
returns the deterministic lower bound ``KL_c`` instead. Measured on SmolLM2-135M (510
scored tokens of our prose, benchmarks/bench_store.py): mean KLD within 0.2 % of the full store for
an 8-bit and a 4-bit per-row RTN quant at ~1.7 kB per token (56x smaller than llama.cpp's
2 V bytes). Reverse KL and Jensen-Shannon use the bucket only: lower bounds of the full
ones (data-processing inequality). Same top-1, the reference's top-1 probability,
NLL(ref), NLL(Q), dp and the top-5/top-10 overlaps are exact (given ``min_k >= 10``).

Layout: ``meta.json`` (``kind = "compact"``), ``tokens.npy``, and raw little-endian arrays
``counts.bin`` (int32, k per token), ``ids.bin`` (uint16 when vocab <= 65536, else int32),
``logp.bin`` (float32 or float16 per kept entry), ``log_tail.bin`` (float32, -inf when
nothing is left), ``target_logp.bin`` (float32), ``tail_counts.bin`` (int32),
``tail_ids.bin`` and ``tail_logp.bin`` (the samples), all memory-mapped on read.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from quantfid.errors import FormatError, MismatchError
from quantfid.metrics.types import TokenMetrics
from quantfid.store.meta import (
    TOKENS_NAME,
    StoreDirWriter,
    StoreMeta,
    StoreWriterBase,
    as_float_rows,
    check_compatible,
    load_tokens,
)

DEFAULT_MASS = 1.0 - 1e-4
DEFAULT_CAP = 256
DEFAULT_MIN_K = 10
DEFAULT_TAIL_SAMPLES = 32
VALUE_DTYPES = ("float32", "float16")
_ROWS = 64  # rows per pass: memory O(_ROWS x vocab) float64
_FILES = ("counts", "ids", "logp", "log_tail", "target_logp", "tail_counts", "tail_ids",
          "tail_logp")


def sample_tail(tail_p: np.ndarray, logp: np.ndarray, m: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Systematic PPS sample of ``m`` ids per row from the tail distribution P_T.

    tail_p: (n, V) probabilities with the kept entries zeroed; logp: (n, V) log-probs. Row i
    gets the ids at cumulative tail mass (j + u_i) / m of the total, j = 0..m-1, u_i ~ U[0, 1)
    from ``rng``: each tail id is drawn m * p_T(v) times in expectation, so p_T * mean_j
    f(v_j) is an unbiased estimate of sum_{v in tail} p(v) f(v). Rows with an empty tail get
    -1 ids. Returns (ids (n, m), their log-probs).
    """
    n = tail_p.shape[0]
    ids = np.full((n, m), -1, np.int64)
    u = np.asarray(rng.random(n), dtype=np.float64)
    for i in range(n):
        cum = np.cumsum(tail_p[i])
        if not cum[-1] > 0:
            continue
        pos = (np.arange(m) + u[i]) / m * cum[-1]
        pick = np.minimum(np.searchsorted(cum, pos, side="right"), tail_p.shape[1] - 1)
        pick[tail_p[i, pick] <= 0] = int(np.argmax(tail_p[i]))  # float edge at cum[-1]
        ids[i] = pick
    vals = np.take_along_axis(logp, np.maximum(ids, 0), axis=1)
    return ids, np.where(ids >= 0, vals, -np.inf)


def id_dtype(vocab_size: int) -> np.dtype:
    """Storage type of the kept vocabulary ids."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<i4")


def softmax_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise (log-softmax, softmax) in float64 with one exp pass."""
    x = np.asarray(x, dtype=np.float64)
    mx = x.max(axis=1, keepdims=True)
    e = np.exp(x - mx)
    s = e.sum(axis=1, keepdims=True)
    return x - (mx + np.log(s)), e / s


def _log_rows(total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(total)


def select_top(logp: np.ndarray, mass: float = DEFAULT_MASS, cap: int = DEFAULT_CAP,
               min_k: int = DEFAULT_MIN_K, probs: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Adaptive top-k of normalized float64 log-probs (n, V) (``probs``: their exp, if known).

    Returns (counts (n,), ids (n, cap) sorted by decreasing prob, values (n, cap), tail_p
    (n, V): the probabilities with the kept entries zeroed, so ``p_T = tail_p.sum(1)`` is a
    direct sum of the tail, never ``1 - sum``); only the first ``counts[i]`` entries of row
    i are kept.
    """
    n, vocab = logp.shape
    cap = min(cap, vocab)
    min_k = min(min_k, cap)
    if cap < vocab:
        part = np.argpartition(-logp, cap - 1, axis=1)[:, :cap]
    else:
        part = np.broadcast_to(np.arange(vocab), (n, vocab)).copy()
    vals = np.take_along_axis(logp, part, axis=1)
    order = np.lexsort((part, -vals), axis=-1)
    ids = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    cum = np.cumsum(np.exp(vals), axis=1)
    counts = np.clip((cum < mass).sum(axis=1) + 1, min_k, cap)
    tail_p = np.exp(logp) if probs is None else probs.copy()
    keep = np.arange(cap)[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(n)[:, None], (n, cap))
    tail_p[rows[keep], ids[keep]] = 0.0
    return counts.astype(np.int32), ids, vals, tail_p


def _tail_kl_estimate(rows: np.ndarray, ln_r: np.ndarray, counts: np.ndarray,
                      n: int) -> np.ndarray:
    """Per-row estimate of KL(P_T || Q_T) from samples v_j ~ P_T, ln r_j = ln q_T(v_j)/p_T(v_j).

    Uses mean_j (r_j - 1 - ln r_j): unbiased because E_{P_T}[r] = 1 exactly (Q_T sums to
    1 over the tail), every term is >= 0, and for small perturbations each term is about
    (ln r)^2 / 2, so the relative error does not blow up as KL -> 0 (the plain mean of
    -ln r would). Rows with no samples get 0.
    """
    term = np.expm1(ln_r) - ln_r
    return np.where(counts > 0, np.bincount(rows, term, n) / np.maximum(counts, 1), 0.0)


class CompactStoreWriter(StoreWriterBase):
    """Streams windows into a new compact store; ``close()`` publishes it atomically.

    ``append(window_logp, window_tokens)``: (n_scored, vocab) logits or log-probs of one
    window (re-normalised in float64) and its (ctx,) token ids.
    """

    def __init__(self, path: str | os.PathLike[str], *, model_id: str, tokenizer_id: str,
                 vocab_size: int, ctx: int, scoring: str = "llamacpp",
                 model_hash: str | None = None, corpus_hash: str | None = None,
                 mass: float = DEFAULT_MASS, cap: int = DEFAULT_CAP, min_k: int = DEFAULT_MIN_K,
                 tail_samples: int = DEFAULT_TAIL_SAMPLES, value_dtype: str = "float32",
                 rng: np.random.Generator | None = None, overwrite: bool = False) -> None:
        if not 0.0 < mass <= 1.0:
            raise MismatchError(f"mass target must be in (0, 1], got {mass}")
        if tail_samples < 0:
            raise MismatchError(f"tail_samples must be >= 0, got {tail_samples}")
        if cap < 1 or min_k < 1:
            raise MismatchError(f"cap and min_k must be >= 1, got {cap}, {min_k}")
        if value_dtype not in VALUE_DTYPES:
            raise MismatchError(f"value_dtype must be one of {VALUE_DTYPES}, got {value_dtype!r}")
        self.meta = StoreMeta(kind="compact", model_id=model_id, tokenizer_id=tokenizer_id,
                              vocab_size=int(vocab_size), ctx=int(ctx), scoring=scoring,
                              model_hash=model_hash, corpus_hash=corpus_hash,
                              extra={"mass": mass, "cap": cap, "min_k": min_k,
                                     "tail_samples": tail_samples,
                                     "value_dtype": value_dtype,
                                     "id_dtype": id_dtype(vocab_size).str})
        self.value_dtype = np.dtype(value_dtype).newbyteorder("<")
        self.id_dtype = id_dtype(vocab_size)
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._dir = StoreDirWriter(path, overwrite=overwrite)
        self._fh: dict[str, IO[bytes]] = {  # closed in close() / abort()
            k: open(self._dir.file(f"{k}.bin"), "wb") for k in _FILES}  # noqa: SIM115
        self._tokens: list[np.ndarray] = []

    def append(self, window_logp: Any, window_tokens: Any) -> None:
        m = self.meta
        tok, rows = self._window_inputs(window_logp, window_tokens)
        targets = tok[m.first + 1:].astype(np.int64)
        if targets.size and (targets.min() < 0 or targets.max() >= m.vocab_size):
            raise MismatchError(f"window {self.n_windows}: token id outside the vocabulary")
        for lo in range(0, m.n_scored, _ROWS):
            lp, pr = softmax_parts(rows[lo:lo + _ROWS])
            counts, ids, vals, tail_p = select_top(lp, m.extra["mass"], m.extra["cap"],
                                                   m.extra["min_k"], probs=pr)
            log_tail = _log_rows(tail_p.sum(axis=1))
            keep = np.arange(ids.shape[1])[None, :] < counts[:, None]
            n_samp = int(m.extra["tail_samples"])
            floor = math.log1p(-m.extra["mass"]) if m.extra["mass"] < 1 else -math.inf
            need = log_tail > floor if n_samp else np.zeros(len(lp), bool)
            s_ids, s_lp = sample_tail(tail_p[need], lp[need], n_samp, self._rng)
            self._fh["tail_counts"].write(np.where(need, n_samp, 0).astype("<i4").tobytes())
            self._fh["tail_ids"].write(s_ids.reshape(-1).astype(self.id_dtype).tobytes())
            self._fh["tail_logp"].write(s_lp.reshape(-1).astype(self.value_dtype).tobytes())
            self._fh["counts"].write(counts.astype("<i4").tobytes())
            self._fh["ids"].write(ids[keep].astype(self.id_dtype).tobytes())
            self._fh["logp"].write(vals[keep].astype(self.value_dtype).tobytes())
            self._fh["log_tail"].write(log_tail.astype("<f4").tobytes())
            t = targets[lo:lo + _ROWS]
            self._fh["target_logp"].write(lp[np.arange(len(t)), t].astype("<f4").tobytes())
        self._tokens.append(tok.astype(np.int32))

    def _close_files(self) -> None:
        for fh in self._fh.values():
            if not fh.closed:
                fh.close()

    def close(self) -> CompactStore:
        self._commit()
        return CompactStore(self._dir.path)


class CompactStore:
    """Reader of a compact store (memory-mapped arrays)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.meta = StoreMeta.load(self.path)
        m = self.meta
        if m.kind != "compact":
            raise FormatError(f"{self.path}: a {m.kind!r} store, not a compact store")
        self.tokens = load_tokens(self.path, m, TOKENS_NAME)
        n_tok = m.n_windows * m.n_scored
        self.counts = self._map("counts", "<i4", n_tok)
        self.offsets = np.zeros(n_tok + 1, np.int64)
        np.cumsum(self.counts, out=self.offsets[1:])
        nnz = int(self.offsets[-1])
        vdt = str(m.extra.get("value_dtype"))
        if vdt not in VALUE_DTYPES:
            raise FormatError(f"{self.path}: unknown value_dtype {vdt!r}")
        self.ids = self._map("ids", str(m.extra.get("id_dtype", id_dtype(m.vocab_size).str)), nnz)
        self.values = self._map("logp", np.dtype(vdt).newbyteorder("<").str, nnz)
        self.log_tail = self._map("log_tail", "<f4", n_tok)
        self.target_logp = self._map("target_logp", "<f4", n_tok)
        self.tail_counts = self._map("tail_counts", "<i4", n_tok)
        self.tail_offsets = np.zeros(n_tok + 1, np.int64)
        np.cumsum(self.tail_counts, out=self.tail_offsets[1:])
        n_s = int(self.tail_offsets[-1])
        self.tail_ids = self._map("tail_ids", str(self.ids.dtype.str), n_s)
        self.tail_values = self._map("tail_logp", self.values.dtype.str, n_s)

    def _map(self, name: str, dtype: str, n: int) -> np.ndarray:
        p = self.path / f"{name}.bin"
        if not p.is_file():
            raise FormatError(f"{p}: missing")
        size = p.stat().st_size
        want = n * np.dtype(dtype).itemsize
        if size != want:
            raise FormatError(f"{p}: expected {want} bytes ({n} x {dtype}), found {size}")
        if n == 0:
            return np.zeros(0, dtype)
        return np.memmap(p, dtype, "r", shape=(n,))

    @property
    def n_windows(self) -> int:
        return self.meta.n_windows

    @property
    def n_scored(self) -> int:
        return self.meta.n_scored

    def nbytes(self) -> int:
        """Bytes of per-token data (all .bin files)."""
        return sum((self.path / f"{k}.bin").stat().st_size for k in _FILES)

    def _window(self, w: int) -> int:
        if not 0 <= w < self.n_windows:
            raise MismatchError(f"{self.path}: window {w} out of range [0, {self.n_windows})")
        return w

    def targets(self, w: int) -> np.ndarray:
        return np.asarray(self.tokens[self._window(w), self.meta.first + 1:], dtype=np.int64)

    def check_tokens(self, tokens: np.ndarray) -> None:
        """MismatchError unless ``tokens`` (n_windows, ctx) are this store's token ids."""
        check_compatible(self.meta, tokens=tokens, stored_tokens=np.asarray(self.tokens))

    def tail_mass(self, w: int | None = None) -> np.ndarray:
        """p_T per token (of window ``w`` or of all windows)."""
        lt = np.asarray(self.log_tail, dtype=np.float64)
        if w is not None:
            s = self._window(w) * self.n_scored
            lt = lt[s:s + self.n_scored]
        return np.exp(lt)

    def tail_bound(self, eps: float, w: int | None = None) -> np.ndarray:
        """Per-token upper bound ``2 eps p_T`` on KL - KL_c when tail log-ratios are <= eps."""
        return 2.0 * eps * self.tail_mass(w)

    def metrics_against(self, w: int, q: Any, targets: np.ndarray | None = None, *,
                        tail: str = "sampled") -> TokenMetrics:
        """Per-token metrics of quant logits/log-probs ``q`` (n_scored, vocab) for window ``w``.

        kld: bucket KL_c plus the sampled tail estimate (``tail="sampled"``) or the lower
        bound KL_c alone (``tail="bucket"``); rkld / jsd use the bucket (lower bounds);
        everything else is exact (module docstring). ``targets`` defaults to the stored
        next tokens; given, they must equal them.
        """
        if tail not in ("sampled", "bucket"):
            raise MismatchError(f"tail must be 'sampled' or 'bucket', got {tail!r}")
        m = self.meta
        t_all = self.targets(w)
        if targets is not None and not np.array_equal(np.asarray(targets), t_all):
            raise MismatchError(f"{self.path}: targets differ from the stored tokens of "
                                f"window {w}")
        qa = as_float_rows(q, m.n_scored, m.vocab_size, f"quant window {w}")
        n = m.n_scored
        names = ("kld", "rkld", "jsd", "nll_ref", "nll_q", "dp", "ref_top1_prob",
                 "top5_overlap", "top10_overlap")
        out = {k: np.empty(n, np.float64) for k in names}
        same = np.empty(n, bool)
        base = w * n
        for lo in range(0, n, _ROWS):
            hi = min(n, lo + _ROWS)
            self._rows(base + lo, base + hi, qa[lo:hi], t_all[lo:hi], out, same, lo,
                       tail == "sampled")
        return TokenMetrics(kld=out["kld"], same_top1=same, ref_top1_prob=out["ref_top1_prob"],
                            rkld=out["rkld"], jsd=out["jsd"], nll_ref=out["nll_ref"],
                            nll_q=out["nll_q"], dp=out["dp"], top5_overlap=out["top5_overlap"],
                            top10_overlap=out["top10_overlap"])

    def _rows(self, t0: int, t1: int, q: np.ndarray, tgt: np.ndarray,
              out: dict[str, np.ndarray], same: np.ndarray, o: int, sampled: bool) -> None:
        n = t1 - t0
        s = slice(o, o + n)
        lq, eq = softmax_parts(q)
        counts = np.asarray(self.counts[t0:t1], dtype=np.int64)
        a, b = int(self.offsets[t0]), int(self.offsets[t1])
        ids = np.asarray(self.ids[a:b], dtype=np.int64)
        lp = np.asarray(self.values[a:b], dtype=np.float64)
        rows = np.repeat(np.arange(n), counts)
        starts = (self.offsets[t0:t1] - a).astype(np.int64)
        lq_top = lq[rows, ids]
        lqt = lq[np.arange(n), tgt]
        p_top, q_top = np.exp(lp), np.exp(lq_top)
        lm_top = np.logaddexp(lp, lq_top) - np.log(2.0)
        eq[rows, ids] = 0.0
        lq_tail = _log_rows(eq.sum(axis=1))  # direct sum over the tail, never 1 - sum
        lp_tail = np.asarray(self.log_tail[t0:t1], dtype=np.float64)
        p_tail, q_tail = np.exp(lp_tail), np.exp(lq_tail)
        lm_tail = np.logaddexp(lp_tail, lq_tail) - np.log(2.0)

        def bucket(w: np.ndarray, la: np.ndarray, lb: np.ndarray) -> np.ndarray:
            # w * (la - lb) with 0 * anything = 0 (empty buckets)
            with np.errstate(invalid="ignore"):  # -inf - -inf in empty buckets
                return np.where(w > 0, w * (la - lb), 0.0)

        kl_c = np.bincount(rows, bucket(p_top, lp, lq_top), n) + bucket(p_tail, lp_tail, lq_tail)
        ta, tb = int(self.tail_offsets[t0]), int(self.tail_offsets[t1])
        tcounts = np.asarray(self.tail_counts[t0:t1], dtype=np.int64)
        if sampled and tb > ta:
            srows = np.repeat(np.arange(n), tcounts)
            # ln r = ln(q_T(v)/p_T(v)) of each sampled tail id, conditional on the tail
            ln_r = ((lq[srows, np.asarray(self.tail_ids[ta:tb], dtype=np.int64)]
                     - lq_tail[srows])
                    - (np.asarray(self.tail_values[ta:tb], dtype=np.float64) - lp_tail[srows]))
            kl_c = kl_c + p_tail * _tail_kl_estimate(srows, ln_r, tcounts, n)
        out["kld"][s] = kl_c
        out["rkld"][s] = (np.bincount(rows, bucket(q_top, lq_top, lp), n)
                          + bucket(q_tail, lq_tail, lp_tail))
        out["jsd"][s] = 0.5 * (np.bincount(rows, bucket(p_top, lp, lm_top)
                                           + bucket(q_top, lq_top, lm_top), n)
                               + bucket(p_tail, lp_tail, lm_tail) + bucket(q_tail, lq_tail, lm_tail))
        ref_top = ids[starts]
        same[s] = ref_top == q.argmax(axis=1)
        out["ref_top1_prob"][s] = np.exp(lp[starts])
        lpt = np.asarray(self.target_logp[t0:t1], dtype=np.float64)
        out["nll_ref"][s] = -lpt
        out["nll_q"][s] = -lqt
        out["dp"][s] = np.exp(lqt) - np.exp(lpt)
        for k in (5, 10):
            kk = min(k, int(counts.min()) if n else k, q.shape[1])
            ref_k = ids[starts[:, None] + np.arange(kk)[None, :]]
            q_k = np.argpartition(-q, kk - 1, axis=1)[:, :kk] if kk < q.shape[1] else \
                np.broadcast_to(np.arange(kk), (n, kk))
            inter = (ref_k[:, :, None] == q_k[:, None, :]).any(axis=2).sum(axis=1)
            out[f"top{k}_overlap"][s] = inter / kk


# ---- chunk API (interim implementation over the per-window code above) -----------------------
def compact_rows(logits: Any, targets: Any, *, mass: float = DEFAULT_MASS, cap: int = DEFAULT_CAP,
                 min_k: int = DEFAULT_MIN_K, tail_samples: int = DEFAULT_TAIL_SAMPLES,
                 rng: np.random.Generator) -> Any:
    """Compact rows of logits (P, V) (float64 log-softmax on the host)."""
    from quantfid.store.rows import CompactRows

    x = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    t = np.asarray(targets, dtype=np.int64)
    parts = []
    for lo in range(0, x.shape[0], _ROWS):
        lp, pr = softmax_parts(x[lo:lo + _ROWS])
        counts, ids, vals, tail_p = select_top(lp, mass, cap, min_k, probs=pr)
        log_tail = _log_rows(tail_p.sum(axis=1))
        keep = np.arange(ids.shape[1])[None, :] < counts[:, None]
        floor = math.log1p(-mass) if mass < 1 else -math.inf
        need = log_tail > floor if tail_samples else np.zeros(len(lp), bool)
        s_ids, s_lp = sample_tail(tail_p[need], lp[need], tail_samples, rng)
        tt = t[lo:lo + _ROWS]
        tl = np.where(tt >= 0, lp[np.arange(len(tt)), np.maximum(tt, 0)], np.nan)
        parts.append(CompactRows(counts.astype(np.int32), ids[keep].astype(np.int64),
                                 vals[keep].astype(np.float32), log_tail.astype(np.float32),
                                 tl.astype(np.float32), np.where(need, tail_samples, 0).astype(np.int32),
                                 s_ids.reshape(-1).astype(np.int64),
                                 s_lp.reshape(-1).astype(np.float32)))
    return CompactRows.concat(parts)


def _append_rows(self: CompactStoreWriter, rows: Any, tokens: Any) -> None:
    tok = np.asarray(tokens)
    self._fh["tail_counts"].write(np.asarray(rows.tail_counts).astype("<i4").tobytes())
    self._fh["tail_ids"].write(np.asarray(rows.tail_ids).astype(self.id_dtype).tobytes())
    self._fh["tail_logp"].write(np.asarray(rows.tail_logp).astype(self.value_dtype).tobytes())
    self._fh["counts"].write(np.asarray(rows.counts).astype("<i4").tobytes())
    self._fh["ids"].write(np.asarray(rows.ids).astype(self.id_dtype).tobytes())
    self._fh["logp"].write(np.asarray(rows.logp).astype(self.value_dtype).tobytes())
    self._fh["log_tail"].write(np.asarray(rows.log_tail).astype("<f4").tobytes())
    self._fh["target_logp"].write(np.asarray(rows.target_logp).astype("<f4").tobytes())
    self._tokens.append(tok.astype(np.int32))


CompactStoreWriter.append_rows = _append_rows  # type: ignore[attr-defined]


def _store_rows(self: CompactStore, w: int, lo: int = 0, hi: int | None = None) -> Any:
    from quantfid.store.rows import CompactRows

    n = self.n_scored
    hi = n if hi is None else hi
    t0, t1 = self._window(w) * n + lo, self._window(w) * n + hi
    a, b = int(self.offsets[t0]), int(self.offsets[t1])
    ta, tb = int(self.tail_offsets[t0]), int(self.tail_offsets[t1])
    return CompactRows(np.asarray(self.counts[t0:t1]), np.asarray(self.ids[a:b], np.int64),
                       np.asarray(self.values[a:b]), np.asarray(self.log_tail[t0:t1]),
                       np.asarray(self.target_logp[t0:t1]),
                       np.asarray(self.tail_counts[t0:t1]),
                       np.asarray(self.tail_ids[ta:tb], np.int64),
                       np.asarray(self.tail_values[ta:tb]))


CompactStore.rows = _store_rows  # type: ignore[attr-defined]


class _RowsView:
    def __init__(self, r: Any) -> None:
        self.counts, self.offsets, self.ids, self.values = r.counts, r.offsets, r.ids, r.logp
        self.log_tail, self.target_logp = r.log_tail, r.target_logp
        self.tail_counts, self.tail_offsets = r.tail_counts, r.tail_offsets
        self.tail_ids, self.tail_values = r.tail_ids, r.tail_logp


def compact_metrics(ref: Any, logits: Any, targets: Any, *, tail: str = "sampled") -> TokenMetrics:
    x = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    n = len(ref)
    names = ("kld", "rkld", "jsd", "nll_ref", "nll_q", "dp", "ref_top1_prob",
             "top5_overlap", "top10_overlap")
    out = {k: np.empty(n, np.float64) for k in names}
    same = np.empty(n, bool)
    view = _RowsView(ref)
    t = np.asarray(targets, dtype=np.int64)
    for lo in range(0, n, _ROWS):
        hi = min(n, lo + _ROWS)
        sub = _RowsView(ref.slice(lo, hi))
        CompactStore._rows(sub, 0, hi - lo, x[lo:hi].astype(np.float64), t[lo:hi], out, same,  # type: ignore[arg-type]
                           lo, tail == "sampled")
    del view
    return TokenMetrics(kld=out["kld"], same_top1=same, ref_top1_prob=out["ref_top1_prob"],
                        rkld=out["rkld"], jsd=out["jsd"], nll_ref=out["nll_ref"],
                        nll_q=out["nll_q"], dp=out["dp"], top5_overlap=out["top5_overlap"],
                        top10_overlap=out["top10_overlap"])


def full_metrics(ref_rows: np.ndarray, logits: Any, targets: Any) -> TokenMetrics:
    from quantfid.metrics.token import token_metrics

    x = logits.detach().float().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    return token_metrics(np.asarray(ref_rows, dtype=np.float32), x, np.asarray(targets))
