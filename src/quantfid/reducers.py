"""Reducers: what a backend applies to each chunk of logits, where the logits live.

- :class:`CompactRowsReducer` (the reference's pass): logits -> compact rows (top-k + tail,
  :mod:`quantfid.store.compact`), to be stored once.
- :class:`CompareReducer` (a quant's pass): logits -> per-token metrics against the stored
  reference rows at the same positions (:class:`~quantfid.metrics.types.TokenMetrics`):
  compact reference rows through :func:`quantfid.store.compact.compact_metrics`, full rows
  (a full store) through :func:`quantfid.store.full.full_metrics`, llama.cpp kld-base rows
  through llama.cpp's own arithmetic (:func:`quantfid.store.llamacpp.metrics_from_rows`);
  a server's top-K rows through :mod:`quantfid.metrics.topk` (estimates with bounds).

Targets: a reducer is built with a ``targets(window, pos0, n)`` function giving the ids each
position predicts (corpus windows: the next token; prompt sequences: the gold sequence).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from quantfid.backends.base import TopKRows
from quantfid.errors import FormatError, QuantfidError
from quantfid.metrics.types import TokenMetrics
from quantfid.store.rows import CompactRows

Targets = Callable[[int, int, int], np.ndarray]


def window_targets(tokens: np.ndarray, first: int) -> Targets:
    """Targets of llama.cpp-style windows: position p of window w predicts tokens[w, p + 1]
    (``tokens`` the original ids, shape (N, n_ctx); positions counted in the window)."""
    toks = np.asarray(tokens)

    def targets(window: int, pos0: int, n: int) -> np.ndarray:
        return np.asarray(toks[window, pos0 + 1:pos0 + 1 + n], dtype=np.int64)

    return targets


class CompactRowsReducer:
    """Logits -> compact rows; ``rng`` seeds the tail samples (one generator, drawn in order)."""

    def __init__(self, targets: Targets, rng: np.random.Generator, **settings: Any) -> None:
        self.targets = targets
        self.rng = rng
        self.settings = settings

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> CompactRows:
        from quantfid.store.compact import compact_rows

        t = self.targets(window, pos0, logits.shape[0])
        return compact_rows(logits, t, rng=self.rng, **self.settings)

    def topk(self, window: int, pos0: int, rows: TopKRows) -> CompactRows:
        from quantfid.metrics.topk import compact_rows_from_topk

        return compact_rows_from_topk(rows)

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        return None


class RowsSource(Protocol):
    """Reference rows at scored positions: ``kind`` (compact | full | kld-base) and ``rows``."""

    kind: str

    def rows(self, window: int, lo: int, hi: int) -> Any: ...


class ReferenceRows:
    """The stored reference at scored positions: ``rows(window, lo, hi)`` in the store's own
    form (CompactRows for compact stores, float rows for full stores, raw uint16 rows for
    kld-base files) and ``kind`` saying which."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.store: Any
        if self.path.is_file():
            from quantfid.store.llamacpp import KldBase

            self.store, self.kind = KldBase(self.path), "kld-base"
            self.n_vocab = self.store.n_vocab
            return
        from quantfid.store.meta import StoreMeta

        kind = StoreMeta.load(self.path).kind
        if kind == "compact":
            from quantfid.store.compact import CompactStore

            self.store, self.kind = CompactStore(self.path), "compact"
        elif kind == "full":
            from quantfid.store.full import FullStore

            self.store, self.kind = FullStore(self.path), "full"
        else:
            raise FormatError(f"{self.path}: unknown store kind {kind!r}")
        self.n_vocab = self.store.meta.vocab_size

    def rows(self, window: int, lo: int, hi: int) -> Any:
        if self.kind == "kld-base":
            return self.store.rows[window][lo:hi]
        return self.store.rows(window, lo, hi)

    def compact_rows(self, window: int, lo: int, hi: int) -> CompactRows:
        """Compact rows of a full or kld-base reference (for top-K comparisons), made per window
        once: float64 renormalisation of the stored log-probs; a kld-base file's 16-nat floor
        counts as probability 0; tail samples seeded by the window index."""
        cache: dict[int, CompactRows] = self.__dict__.setdefault("_compact", {})
        if window not in cache:
            from quantfid.store.compact import compact_rows

            if self.kind == "kld-base":
                lp = self.store.logp(window).astype(np.float64)
                lp[np.asarray(self.store.rows[window][:, 4:4 + self.n_vocab]) == 0] = -1e4
                t = self.store.targets(window)
            else:
                lp = np.asarray(self.store.rows(window), np.float64)
                t = self.store.targets(window)
            cache[window] = compact_rows(lp, t, rng=np.random.default_rng(window))
        return cache[window].slice(lo, hi)


class CompareReducer:
    """Logits (or a server's top-K rows) -> TokenMetrics against the reference at the same
    positions. ``offset``: scored-position index of the window's first position handed over
    (a store's row 0 is the window's first scored position)."""

    def __init__(self, ref: RowsSource, targets: Targets, first: int,
                 window_map: Callable[[int], int] | None = None) -> None:
        self.ref = ref
        self.targets = targets
        self.first = first
        self.window_map = window_map or (lambda w: w)

    def _ref_rows(self, window: int, pos0: int, n: int) -> Any:
        lo = pos0 - self.first
        if lo < 0:
            raise QuantfidError(f"position {pos0} comes before the first scored position "
                                f"{self.first}")
        return self.ref.rows(self.window_map(window), lo, lo + n)

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> TokenMetrics:
        n = int(logits.shape[0])
        t = self.targets(window, pos0, n)
        rows = self._ref_rows(window, pos0, n)
        if self.ref.kind == "compact":
            from quantfid.store.compact import compact_metrics

            return compact_metrics(rows, logits, t)
        if self.ref.kind == "full":
            from quantfid.store.full import full_metrics

            return full_metrics(np.asarray(rows), logits, t)
        from quantfid.store.llamacpp import metrics_from_rows

        return metrics_from_rows(np.asarray(rows), logits, t, getattr(self.ref, "n_vocab", None))

    def _compact(self, window: int, pos0: int, n: int) -> CompactRows:
        if self.ref.kind == "compact":
            rows: CompactRows = self._ref_rows(window, pos0, n)
            return rows
        convert = getattr(self.ref, "compact_rows", None)
        if convert is None:
            raise QuantfidError("a server's top-K log-probs are compared with a compact "
                                "reference (measure the reference with --store compact)")
        lo = pos0 - self.first
        out: CompactRows = convert(self.window_map(window), lo, lo + n)
        return out

    def topk(self, window: int, pos0: int, rows: TopKRows) -> Any:
        """A server's top-K rows: ``quantfid.metrics.topk.TopKFidelity`` (the estimate as
        TokenMetrics, with per-token bounds ``kld_bound_low`` / ``kld_bound_high``)."""
        from quantfid.metrics.topk import topk_fidelity

        t = self.targets(window, pos0, len(rows))
        return topk_fidelity(self._compact(window, pos0, len(rows)), rows, t)

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        """Ids a server that returns chosen ids should fetch: the reference's kept top-k and
        tail-sample ids of those positions (unique)."""
        try:
            r = self._compact(window, pos0, n)
        except QuantfidError:
            return None
        ids = np.concatenate([r.ids, r.tail_ids])
        return np.unique(ids[ids >= 0])


class FullRows:
    """Logits -> float32 log-softmax rows on the host. For tests and small checks only: it hands
    (P, V) matrices to the caller, which the pipeline never does."""

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float(), dim=-1).cpu()

    def topk(self, window: int, pos0: int, rows: TopKRows) -> torch.Tensor:
        raise QuantfidError("full log-prob rows need an in-process backend")

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        return None


def full_logprobs(backend: Any, ids: np.ndarray, start: int = 0,
                  stop: int | None = None) -> Iterator[torch.Tensor]:
    """float32 log-probs (1, stop - start, V) per window of ``ids`` (N, n_ctx), through the
    backend's ``score_windows`` with :class:`FullRows`. For tests, benchmarks and small checks:
    the pipeline never asks for (P, V) matrices."""
    ids = np.asarray(ids, dtype=np.int64)
    stop = ids.shape[-1] if stop is None else stop
    pending: list[torch.Tensor] = []
    last = 0
    for w, rows in backend.score_windows(ids, start, stop, FullRows()):
        if w != last and pending:
            yield torch.cat(pending, dim=0).unsqueeze(0)  # (1, P, V)
            pending = []
        last = w
        pending.append(rows)
    if pending:
        yield torch.cat(pending, dim=0).unsqueeze(0)
