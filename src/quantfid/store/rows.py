"""Compact rows: the reference's distribution at n positions, kept as top-k + tail.

The in-memory form of what a compact store holds per scored token (see
:mod:`quantfid.store.compact` for the definitions and error bounds), so that a reducer can
produce them where the logits live and a store can hand a chunk of them back.

Row i keeps ``counts[i]`` entries ``ids[offsets[i]:offsets[i + 1]]`` sorted by decreasing
reference probability with their natural log-probs ``logp`` (normalised over the whole
vocabulary); ``log_tail[i]`` is the log of the mass outside them (-inf when nothing is left);
``target_logp[i]`` the exact reference log-prob of the next token (NaN when unknown);
``tail_counts[i]`` sampled tail ids (systematic PPS draws from the tail) with their log-probs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _offsets(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=out[1:])
    return out


@dataclass(frozen=True)
class CompactRows:
    """n rows of top-k + tail (all numpy, host memory).

    counts (n,) int32; ids (nnz,) int64; logp (nnz,) float32 or float64; log_tail (n,);
    target_logp (n,); tail_counts (n,) int32; tail_ids (ns,) int64; tail_logp (ns,).
    """

    counts: np.ndarray
    ids: np.ndarray
    logp: np.ndarray
    log_tail: np.ndarray
    target_logp: np.ndarray
    tail_counts: np.ndarray
    tail_ids: np.ndarray
    tail_logp: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.counts)
        if not (len(self.log_tail) == len(self.target_logp) == len(self.tail_counts) == n):
            raise ValueError("compact rows: per-row arrays differ in length")
        if int(np.sum(self.counts)) != len(self.ids) or len(self.ids) != len(self.logp):
            raise ValueError("compact rows: counts do not match the kept entries")
        if int(np.sum(self.tail_counts)) != len(self.tail_ids) or \
                len(self.tail_ids) != len(self.tail_logp):
            raise ValueError("compact rows: tail counts do not match the tail samples")

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def offsets(self) -> np.ndarray:
        """(n + 1,) start of each row's kept entries."""
        return _offsets(self.counts)

    @property
    def tail_offsets(self) -> np.ndarray:
        return _offsets(self.tail_counts)

    def slice(self, lo: int, hi: int) -> CompactRows:
        """Rows ``lo .. hi - 1``."""
        o, t = self.offsets, self.tail_offsets
        return CompactRows(self.counts[lo:hi], self.ids[o[lo]:o[hi]], self.logp[o[lo]:o[hi]],
                           self.log_tail[lo:hi], self.target_logp[lo:hi],
                           self.tail_counts[lo:hi], self.tail_ids[t[lo]:t[hi]],
                           self.tail_logp[t[lo]:t[hi]])

    @staticmethod
    def concat(parts: Sequence[CompactRows]) -> CompactRows:
        """Rows of ``parts`` one after another."""
        if not parts:
            raise ValueError("concat of no compact rows")
        return CompactRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "counts", "ids", "logp", "log_tail", "target_logp", "tail_counts", "tail_ids",
            "tail_logp")))
