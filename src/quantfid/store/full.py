"""Full reference store: every scored token's log-probs over the whole vocabulary.

Layout of the store directory (see ``quantfid.store.meta`` for the header):

- ``meta.json``: header (``kind = "full"``, ``extra.dtype`` = ``"float32"`` or ``"float16"``);
- ``tokens.npy``: int32 (n_windows, ctx) window token ids;
- ``windows/NNNNNN.npy``: one file per window, (n_scored, vocab) log-probs, memory-mapped on
  read. Log-probs are the row-wise log-softmax of what was appended, computed in float64
  and stored in the chosen dtype (float16 keeps ~3 significant digits: its rounding error
  is <= 2**-11 relative per log-prob).

Written atomically (``StoreDirWriter``): an interrupted write leaves no directory a reader
accepts. ``FullStore.metrics_against`` re-normalises both sides with ``full_metrics``, so
KL(P_ref || P_q) etc. are in nats. ``full_metrics`` is the chunk API for any full-vocabulary
reference (this store's ``rows``, llama.cpp kld-base rows): the quant's (P, V) logits are
reduced where they live (numba float64 on the CPU, torch float32 on CUDA).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.errors import FormatError, MismatchError
from quantfid.metrics.inputs import check_targets, on_device, shape2
from quantfid.metrics.types import TokenMetrics
from quantfid.store.meta import (
    TOKENS_NAME,
    StoreDirWriter,
    StoreMeta,
    StoreWriterBase,
    check_compatible,
    load_tokens,
    log_softmax64,
)

DTYPES = ("float32", "float16")


def full_metrics(ref_logp_rows: Any, logits: Any, targets: Any = None, *,
                 extras: bool = True) -> TokenMetrics:
    """Per-token metrics of a quant's (P, V) logits against full reference rows (P, V).

    ref_logp_rows: the reference's log-probs or logits (numpy, any float dtype; re-normalised).
    logits: numpy or torch (CPU or CUDA), any float dtype. targets: (P,) next-token ids or
    None. On the CPU: ``token_metrics`` (fused numba kernels, float64, chunked, no float64
    copy of the chunk). On CUDA: torch float32 over V with float64 per-row arithmetic
    (``quantfid.metrics.device.full_metrics_torch``); only the per-token results come back.
    """
    if on_device(logits):
        from quantfid.metrics import device

        n, vocab = shape2(logits, "quant logits")
        if shape2(ref_logp_rows, "reference rows") != (n, vocab):
            raise MismatchError(f"reference rows {tuple(ref_logp_rows.shape)} and quant logits "
                                f"{(n, vocab)} differ in shape")
        t = None if targets is None else check_targets(targets, n, vocab)
        if t is not None and (t < 0).any():
            raise MismatchError("targets: -1 (unknown) is not allowed with full rows")
        res = device.full_metrics_torch(ref_logp_rows, logits, t, extras=extras)
        return TokenMetrics(**res.arrays)
    from quantfid.metrics.token import token_metrics

    return token_metrics(ref_logp_rows, logits, targets, extras=extras)


def _window_name(i: int) -> str:
    return f"windows/{i:06d}.npy"


class FullStoreWriter(StoreWriterBase):
    """Streams windows into a new full store; ``close()`` publishes it atomically.

    ``append(window_logp, window_tokens)``: (n_scored, vocab) logits or log-probs of one
    window (numpy or torch) and its (ctx,) token ids.
    """

    def __init__(self, path: str | os.PathLike[str], *, model_id: str, tokenizer_id: str,
                 vocab_size: int, ctx: int, scoring: str = "llamacpp",
                 model_hash: str | None = None, corpus_hash: str | None = None,
                 dtype: str = "float32", overwrite: bool = False) -> None:
        if dtype not in DTYPES:
            raise MismatchError(f"full store dtype must be one of {DTYPES}, got {dtype!r}")
        self.meta = StoreMeta(kind="full", model_id=model_id, tokenizer_id=tokenizer_id,
                              vocab_size=int(vocab_size), ctx=int(ctx), scoring=scoring,
                              model_hash=model_hash, corpus_hash=corpus_hash,
                              extra={"dtype": dtype})
        self.dtype = np.dtype(dtype)
        self._dir = StoreDirWriter(path, overwrite=overwrite)
        (self._dir.tmp / "windows").mkdir()
        self._tokens: list[np.ndarray] = []

    def append(self, window_logp: Any, window_tokens: Any) -> None:
        tok, rows = self._window_inputs(window_logp, window_tokens)
        logp = log_softmax64(rows).astype(self.dtype)
        with open(self._dir.file(_window_name(self.n_windows)), "wb") as fh:
            np.save(fh, logp)
        self._tokens.append(tok.astype(np.int32))

    def close(self) -> FullStore:
        self._commit()
        return FullStore(self._dir.path)


class FullStore:
    """Reader of a full store (memory-mapped windows)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.meta = StoreMeta.load(self.path)
        if self.meta.kind != "full":
            raise FormatError(f"{self.path}: a {self.meta.kind!r} store, not a full store")
        dtype = self.meta.extra.get("dtype")
        if dtype not in DTYPES:
            raise FormatError(f"{self.path}: unknown dtype {dtype!r} in header")
        self.dtype = np.dtype(dtype)
        self.tokens = load_tokens(self.path, self.meta, TOKENS_NAME)

    @property
    def n_windows(self) -> int:
        return self.meta.n_windows

    @property
    def n_scored(self) -> int:
        return self.meta.n_scored

    def _window(self, w: int) -> int:
        if not 0 <= w < self.n_windows:
            raise MismatchError(f"{self.path}: window {w} out of range [0, {self.n_windows})")
        return w

    def logp(self, w: int) -> np.ndarray:
        """Log-probs of window ``w``: memory-mapped (n_scored, vocab) array in the store dtype."""
        p = self.path / _window_name(self._window(w))
        try:
            arr: np.ndarray = np.load(p, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise FormatError(f"{p}: unreadable window file: {e}") from e
        want = (self.meta.n_scored, self.meta.vocab_size)
        if arr.shape != want or arr.dtype != self.dtype:
            raise FormatError(f"{p}: shape {arr.shape} dtype {arr.dtype}, expected {want} "
                              f"{self.dtype}")
        return arr

    def rows(self, window: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Reference log-probs of rows ``lo .. hi - 1`` of window ``window``: a memory-mapped
        (hi - lo, vocab) view in the store dtype."""
        n = self.n_scored
        hi = n if hi is None else hi
        if not 0 <= lo <= hi <= n:
            raise MismatchError(f"{self.path}: rows {lo}..{hi} outside [0, {n}]")
        return self.logp(window)[lo:hi]

    def targets(self, w: int) -> np.ndarray:
        """Next-token ids of window ``w``'s scored positions, (n_scored,) int64."""
        return np.asarray(self.tokens[self._window(w), self.meta.first + 1:], dtype=np.int64)

    def check_tokens(self, tokens: np.ndarray) -> None:
        """MismatchError unless ``tokens`` (n_windows, ctx) are this store's token ids."""
        check_compatible(self.meta, tokens=tokens, stored_tokens=np.asarray(self.tokens))

    def metrics_against(self, w: int, q: Any, targets: np.ndarray | None = None, *,
                        extras: bool = True) -> TokenMetrics:
        """Per-token metrics of quant logits/log-probs ``q`` (n_scored, vocab) for window ``w``.

        ``targets`` defaults to the stored next tokens; given, they must equal them.
        """
        t = self.targets(w)
        if targets is not None and not np.array_equal(np.asarray(targets), t):
            raise MismatchError(f"{self.path}: targets differ from the stored tokens of "
                                f"window {w}")
        m = self.meta
        if shape2(q, f"quant window {w}") != (m.n_scored, m.vocab_size):
            raise MismatchError(f"quant window {w}: expected shape ({m.n_scored}, "
                                f"{m.vocab_size}), got {tuple(q.shape)}")
        return full_metrics(self.rows(w), q, t, extras=extras)
