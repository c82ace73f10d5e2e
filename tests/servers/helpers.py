"""Reducers for the server tests: hand back the rows, or fidelity against reference rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.metrics.topk import TopKFidelity, topk_fidelity
from quantfid.store.rows import CompactRows


def log_softmax(x: Any) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


class RowsReducer:
    """Returns (pos0, rows) unchanged; asks for ``wanted`` ids when given."""

    def __init__(self, wanted: np.ndarray | None = None) -> None:
        self.wanted = wanted
        self.asked: list[tuple[int, int, int]] = []

    def full(self, window: int, pos0: int, logits: Any) -> Any:
        raise AssertionError("a server hands top-k rows")

    def topk(self, window: int, pos0: int, rows: TopKRows) -> tuple[int, TopKRows]:
        return pos0, rows

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        self.asked.append((window, pos0, n))
        return self.wanted


@dataclass
class FidelityReducer:
    """Fidelity of each chunk against the reference's compact rows of that window (rows of
    positions ``start ..``); asks a server that can for the kept ids and tail samples."""

    ref: dict[int, CompactRows]
    windows: np.ndarray
    start: int
    ask: bool = True

    def full(self, window: int, pos0: int, logits: Any) -> Any:
        raise AssertionError("a server hands top-k rows")

    def _rows(self, window: int, pos0: int, n: int) -> CompactRows:
        return self.ref[window].slice(pos0 - self.start, pos0 - self.start + n)

    def topk(self, window: int, pos0: int, rows: TopKRows) -> TopKFidelity:
        t = self.windows[window, pos0 + 1:pos0 + 1 + len(rows)]
        return topk_fidelity(self._rows(window, pos0, len(rows)), rows, t)

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        if not self.ask:
            return None
        r = self._rows(window, pos0, n)
        ids = np.concatenate([r.ids, r.tail_ids])
        return np.unique(ids[ids >= 0])
