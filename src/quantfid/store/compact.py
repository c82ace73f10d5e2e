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
reported ``kld`` is ``KL_c + p_T * estimate``; ``tail="bucket"`` gives the deterministic
lower bound ``KL_c`` instead. Measured on SmolLM2-135M (510 scored tokens of our prose,
benchmarks/bench_store.py): mean KLD within 0.2 % of the full store for an 8-bit and a 4-bit
per-row RTN quant at ~1.7 kB per token (56x smaller than llama.cpp's 2 V bytes). Reverse KL
and Jensen-Shannon use the bucket only: lower bounds of the full ones (data-processing
inequality). Same top-1, the reference's top-1 probability, NLL(ref), NLL(Q), dp and the
top-5/top-10 overlaps are exact (given ``min_k >= 10``; a row with fewer kept ids compares
its first ``min(k, count)``).

Computation, in chunks of P positions where the logits live (memory O(P x V), never
O(corpus x V)): ``compact_rows`` turns (P, V) logits into ``CompactRows``, ``compact_metrics``
compares a quant's (P, V) logits with them; the writer's ``append`` and the reader's
``metrics_against`` are these calls. CPU: fused numba kernels
(:mod:`quantfid.metrics.compact_kernel`), float64 log-softmax of the values as read (no
float64 copy of the chunk). CUDA: torch float32 on the device (:mod:`quantfid.metrics.device`);
only compact rows or per-token results cross to the host.

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

from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.metrics import compact_kernel as ck
from quantfid.metrics.inputs import check_targets, host_rows, on_device, raise_bad, shape2
from quantfid.metrics.types import TokenMetrics
from quantfid.store.meta import (
    TOKENS_NAME,
    StoreDirWriter,
    StoreMeta,
    StoreWriterBase,
    check_compatible,
    load_tokens,
)
from quantfid.store.rows import CompactRows

DEFAULT_MASS = 1.0 - 1e-4
DEFAULT_CAP = 256
DEFAULT_MIN_K = 10
DEFAULT_TAIL_SAMPLES = 32
VALUE_DTYPES = ("float32", "float16")
TAILS = ("sampled", "bucket")
METRIC_FIELDS = ("kld", "rkld", "jsd", "nll_ref", "nll_q", "dp", "ref_top1_prob",
                 "top5_overlap", "top10_overlap")  # columns of compare_rows' output, then same
_FILES = ("counts", "ids", "logp", "log_tail", "target_logp", "tail_counts", "tail_ids",
          "tail_logp")


def id_dtype(vocab_size: int) -> np.dtype:
    """Storage type of the kept vocabulary ids."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<i4")


def check_settings(mass: float, cap: int, min_k: int, tail_samples: int) -> None:
    """MismatchError unless the compact-row settings make sense."""
    if not 0.0 < mass <= 1.0:
        raise MismatchError(f"mass target must be in (0, 1], got {mass}")
    if tail_samples < 0:
        raise MismatchError(f"tail_samples must be >= 0, got {tail_samples}")
    if cap < 1 or min_k < 1:
        raise MismatchError(f"cap and min_k must be >= 1, got {cap}, {min_k}")


def compact_rows(logits: Any, targets: Any, *, mass: float = DEFAULT_MASS,
                 cap: int = DEFAULT_CAP, min_k: int = DEFAULT_MIN_K,
                 tail_samples: int = DEFAULT_TAIL_SAMPLES,
                 rng: np.random.Generator) -> CompactRows:
    """The compact rows (module docstring) of P positions' unnormalised logits.

    logits: (P, V) torch tensor (CPU or CUDA) or numpy array, any float dtype. targets: (P,)
    next-token ids, -1 = unknown (NaN ``target_logp``). rng: one uniform per sampled row, in
    row order, so a window's chunks drawn in order give the whole window's rows. Numerics: CPU,
    float64 log-softmax (float32 values widened as read; numba); CUDA, float32 over V on the
    device, top-k mass and log-probs in float64 there, only the rows come back. Ties rank the
    lower id first (as ``argmax``). ``mass = 1`` keeps ``cap`` ids. A NaN or infinity is a
    QuantfidError naming its position.
    """
    check_settings(mass, cap, min_k, tail_samples)
    n, vocab = shape2(logits, "logits")
    t = check_targets(targets, n, vocab)
    if on_device(logits):
        from quantfid.metrics import device

        res = device.compact_rows_torch(logits, t, mass=mass, cap=cap, min_k=min_k,
                                        tail_samples=tail_samples, rng=rng)
        return CompactRows(**res.arrays)
    return _compact_rows_cpu(host_rows(logits, "logits"), t, mass, min(cap, vocab),
                             min(min_k, cap, vocab), tail_samples, rng)


def _compact_rows_cpu(x: np.ndarray, t: np.ndarray, mass: float, cap: int, min_k: int,
                      m: int, rng: np.random.Generator) -> CompactRows:
    n = x.shape[0]
    counts = np.zeros(n, np.int32)
    ids = np.zeros((n, cap), np.int64)  # (P, cap)
    vals = np.zeros((n, cap), np.float64)  # (P, cap)
    lse, log_tail, tlp = (np.zeros(n, np.float64) for _ in range(3))
    bad = np.zeros(n, np.int8)
    ck.select_rows(x, t, mass, cap, min_k, ck.n_blocks(n), counts, ids, vals, lse, log_tail,
                   tlp, bad)
    if bad.any():
        raise_bad(x, bad, "logits")
    floor = math.log1p(-mass) if mass < 1 else -math.inf
    need = log_tail > floor if m else np.zeros(n, bool)
    rows = np.flatnonzero(need)
    u = np.asarray(rng.random(len(rows)), dtype=np.float64)
    s_ids = np.zeros((len(rows), m), np.int64)  # (n_sampled, m)
    s_lp = np.zeros((len(rows), m), np.float64)
    if len(rows):
        ck.sample_rows(x, rows, lse, counts, ids, u, ck.n_blocks(len(rows)), s_ids, s_lp)
    keep = np.arange(cap)[None, :] < counts[:, None]  # (P, cap)
    return CompactRows(counts=counts, ids=ids[keep], logp=vals[keep], log_tail=log_tail,
                       target_logp=tlp, tail_counts=np.where(need, m, 0).astype(np.int32),
                       tail_ids=s_ids.reshape(-1), tail_logp=s_lp.reshape(-1))


def _check_ref(ref: CompactRows, n: int, vocab: int) -> None:
    if len(ref) != n:
        raise MismatchError(f"compact rows: {len(ref)} reference rows for {n} quant positions")
    for name in ("ids", "tail_ids"):
        a = np.asarray(getattr(ref, name))
        if a.size and (int(a.min()) < 0 or int(a.max()) >= vocab):
            raise MismatchError(f"compact rows: {name} outside the quant's vocabulary "
                                f"(size {vocab})")


def compact_metrics(ref: CompactRows, logits: Any, targets: Any, *,
                    tail: str = "sampled") -> TokenMetrics:
    """Per-token metrics of a quant's (P, V) logits against the reference's compact rows.

    kld: bucket KL_c plus the sampled tail estimate (``tail="sampled"``) or the lower bound
    KL_c alone (``"bucket"``); rkld / jsd use the bucket (lower bounds); the rest is exact
    (module docstring). logits: numpy or torch (CPU or CUDA), any float dtype, unnormalised;
    targets: (P,) next-token ids (-1: unknown, NaN nll_q and dp). Numerics: on the CPU one fused
    numba kernel in float64 (the quant's log-softmax from the values as read); on CUDA torch
    float32 over V, float64 over the kept entries, per-token results back to the host.
    """
    if tail not in TAILS:
        raise MismatchError(f"tail must be 'sampled' or 'bucket', got {tail!r}")
    n, vocab = shape2(logits, "quant logits")
    t = check_targets(targets, n, vocab)
    _check_ref(ref, n, vocab)
    if on_device(logits):
        from quantfid.metrics import device

        return TokenMetrics(**device.compact_metrics_torch(
            ref, logits, t, sampled=tail == "sampled").arrays)
    x = host_rows(logits, "quant logits")
    out = np.zeros((n, len(METRIC_FIELDS) + 1), np.float64)  # (P, 10)
    bad = np.zeros(n, np.int8)
    f64 = {k: np.asarray(getattr(ref, k), np.float64)
           for k in ("logp", "log_tail", "target_logp", "tail_logp")}
    ck.compare_rows(x, t, ref.offsets, np.asarray(ref.ids, np.int64), f64["logp"],
                    f64["log_tail"], f64["target_logp"], ref.tail_offsets,
                    np.asarray(ref.tail_ids, np.int64), f64["tail_logp"], tail == "sampled",
                    ck.n_blocks(n), out, bad)
    if bad.any():
        raise_bad(x, bad, "quant logits")
    cols = {k: np.ascontiguousarray(out[:, j]) for j, k in enumerate(METRIC_FIELDS)}
    return TokenMetrics(same_top1=out[:, -1] != 0, **cols)


class CompactStoreWriter(StoreWriterBase):
    """Streams windows into a new compact store; ``close()`` publishes it atomically.

    ``append_rows(rows, window_tokens)``: one window's n_scored compact rows (``compact_rows``
    with ``settings()``, e.g. on the model's device) and its (ctx,) token ids.
    ``append(window_logp, window_tokens)``: (n_scored, vocab) logits or log-probs, numpy or
    torch: ``compact_rows`` (this writer's settings and rng) then ``append_rows``.
    """

    def __init__(self, path: str | os.PathLike[str], *, model_id: str, tokenizer_id: str,
                 vocab_size: int, ctx: int, scoring: str = "llamacpp",
                 model_hash: str | None = None, corpus_hash: str | None = None,
                 mass: float = DEFAULT_MASS, cap: int = DEFAULT_CAP, min_k: int = DEFAULT_MIN_K,
                 tail_samples: int = DEFAULT_TAIL_SAMPLES, value_dtype: str = "float32",
                 rng: np.random.Generator | None = None, overwrite: bool = False) -> None:
        check_settings(mass, cap, min_k, tail_samples)
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

    def settings(self) -> dict[str, Any]:
        """This store's ``compact_rows`` keywords (without ``rng``)."""
        e = self.meta.extra
        return {"mass": e["mass"], "cap": e["cap"], "min_k": e["min_k"],
                "tail_samples": e["tail_samples"]}

    def append(self, window_logp: Any, window_tokens: Any) -> None:
        m = self.meta
        tok = self._window_tokens(window_tokens)
        if shape2(window_logp, f"window {self.n_windows}") != (m.n_scored, m.vocab_size):
            raise MismatchError(f"window {self.n_windows}: expected shape ({m.n_scored}, "
                                f"{m.vocab_size}), got {tuple(window_logp.shape)}")
        try:
            rows = compact_rows(window_logp, tok[m.first + 1:], rng=self._rng, **self.settings())
        except QuantfidError as e:
            raise type(e)(f"window {self.n_windows}: {e}") from e
        self.append_rows(rows, tok)

    def append_rows(self, rows: CompactRows, window_tokens: Any) -> None:
        m = self.meta
        tok = self._window_tokens(window_tokens)
        if len(rows) != m.n_scored:
            raise MismatchError(f"window {self.n_windows}: {len(rows)} compact rows, the "
                                f"store scores {m.n_scored} positions per window")
        _check_ref(rows, m.n_scored, m.vocab_size)
        if np.any(np.asarray(rows.counts) < 0) or np.any(np.asarray(rows.tail_counts) < 0):
            raise MismatchError(f"window {self.n_windows}: negative counts in compact rows")
        dtypes: dict[str, Any] = {
            "counts": "<i4", "ids": self.id_dtype, "logp": self.value_dtype, "log_tail": "<f4",
            "target_logp": "<f4", "tail_counts": "<i4", "tail_ids": self.id_dtype,
            "tail_logp": self.value_dtype}
        for name, dt in dtypes.items():
            self._fh[name].write(np.asarray(getattr(rows, name)).astype(dt).tobytes())
        self._tokens.append(tok.astype(np.int32))

    def _window_tokens(self, window_tokens: Any) -> np.ndarray:
        tok = super()._window_tokens(window_tokens)
        if tok.min() < 0 or tok.max() >= self.meta.vocab_size:
            raise MismatchError(f"window {self.n_windows}: token id outside the vocabulary")
        return tok

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

    def rows(self, window: int, lo: int = 0, hi: int | None = None) -> CompactRows:
        """Compact rows ``lo .. hi - 1`` of window ``window``'s scored positions (copied out of
        the memory maps: ids int64, values float32 as stored, float16 widened)."""
        n = self.n_scored
        hi = n if hi is None else hi
        if not 0 <= lo <= hi <= n:
            raise MismatchError(f"{self.path}: rows {lo}..{hi} outside [0, {n}]")
        t0 = self._window(window) * n + lo
        t1 = t0 + (hi - lo)
        a, b = int(self.offsets[t0]), int(self.offsets[t1])
        sa, sb = int(self.tail_offsets[t0]), int(self.tail_offsets[t1])
        return CompactRows(
            counts=np.array(self.counts[t0:t1], np.int32),
            ids=np.array(self.ids[a:b], np.int64), logp=np.array(self.values[a:b], np.float32),
            log_tail=np.array(self.log_tail[t0:t1], np.float32),
            target_logp=np.array(self.target_logp[t0:t1], np.float32),
            tail_counts=np.array(self.tail_counts[t0:t1], np.int32),
            tail_ids=np.array(self.tail_ids[sa:sb], np.int64),
            tail_logp=np.array(self.tail_values[sa:sb], np.float32))

    def metrics_against(self, w: int, q: Any, targets: np.ndarray | None = None, *,
                        tail: str = "sampled") -> TokenMetrics:
        """Per-token metrics of quant logits/log-probs ``q`` (n_scored, vocab) for window ``w``:
        ``compact_metrics(self.rows(w), q, targets, tail=tail)``. ``targets`` defaults to the
        stored next tokens; given, they must equal them.
        """
        if tail not in TAILS:
            raise MismatchError(f"tail must be 'sampled' or 'bucket', got {tail!r}")
        m = self.meta
        t_all = self.targets(w)
        if targets is not None and not np.array_equal(np.asarray(targets), t_all):
            raise MismatchError(f"{self.path}: targets differ from the stored tokens of "
                                f"window {w}")
        if shape2(q, f"quant window {w}") != (m.n_scored, m.vocab_size):
            raise MismatchError(f"quant window {w}: expected shape ({m.n_scored}, "
                                f"{m.vocab_size}), got {tuple(q.shape)}")
        return compact_metrics(self.rows(w), q, t_all, tail=tail)
