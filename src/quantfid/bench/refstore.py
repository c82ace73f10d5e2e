"""The reference's log-probs over a prompt set's scored tokens, stored once.

A prompt's scored tokens are ``gold_ids[1:]`` (the context after its first token, then the
gold answer). The reference's full log-softmax at those positions goes to the store
engineer's compact store (``quantfid.store.compact``: per token the top-k reference
log-probs covering 1 - 1e-4 of the mass, the exact tail mass, a sample of the tail and the
exact target log-prob; KL, reverse KL and JSD follow that store's definitions and error
bounds, everything else is exact). Values are kept in float32. That store holds fixed-length windows, so
prompts are grouped by length: one compact store per sequence length L, whose windows are
the prompts of that length, scored with the ``"all"`` convention (positions 0..L-2).
Callers feed prompts sorted by length (``PromptRefWriter.append`` closes a length's store
when the length changes), so only one store is open at a time.

Layout: ``<dir>/L<length>/`` compact stores and ``<dir>/index.json`` (written last, so
its presence means complete): prompt id -> [length, window], plus the prompt-set hash,
reference id/hash and tokenizer id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from quantfid import atomic
from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.store.compact import CompactStore, CompactStoreWriter
from quantfid.store.rows import CompactRows

INDEX = "index.json"
FORMAT_VERSION = 1


class PromptRefWriter:
    """Writes the reference store of one prompt set (``append`` in length order, then ``close``)."""

    def __init__(self, path: Path, *, model_id: str, model_hash: str, tokenizer_id: str,
                 vocab_size: int, prompt_set_hash: str) -> None:
        self.path = Path(path)
        if self.path.exists():
            shutil.rmtree(self.path)  # an unfinished earlier write (no index.json): redo it
        self.path.mkdir(parents=True)
        self._ids = (model_id, model_hash, tokenizer_id, int(vocab_size), prompt_set_hash)
        self._meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION, "prompt_set_hash": prompt_set_hash,
            "model_id": model_id, "model_hash": model_hash, "tokenizer_id": tokenizer_id,
            "vocab_size": int(vocab_size)}
        self._index: dict[str, list[int]] = {}
        self._writer: CompactStoreWriter | None = None
        self._len = -1
        self._done: set[int] = set()

    def append(self, prompt_id: str, ids: np.ndarray, rows: CompactRows) -> None:
        """One prompt: its gold token ids (L,) and the reference's compact rows at the
        L - 1 positions predicting ``ids[1:]``."""
        n = len(ids)
        if prompt_id in self._index:
            raise MismatchError(f"prompt id {prompt_id!r} appears twice")
        if n != self._len:
            if n in self._done:
                raise ValueError(f"prompts must arrive grouped by length ({n} seen before)")
            self._close_current()
            model_id, model_hash, tokenizer_id, vocab, set_hash = self._ids
            self._writer = CompactStoreWriter(
                self.path / f"L{n}", model_id=model_id, tokenizer_id=tokenizer_id,
                vocab_size=vocab, ctx=n, scoring="all", model_hash=model_hash,
                corpus_hash=set_hash, value_dtype="float32", rng=np.random.default_rng(n))
            self._len = n
        assert self._writer is not None
        self._index[prompt_id] = [n, self._writer.n_windows]
        self._writer.append_rows(rows, np.asarray(ids))

    def _close_current(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._done.add(self._len)
            self._writer = None

    def close(self) -> None:
        self._close_current()
        atomic.write_json(self.path / INDEX, {**self._meta, "prompts": self._index})

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        shutil.rmtree(self.path, ignore_errors=True)


class PromptRefStore:
    """Reader: per-token metrics of a model's log-probs against the stored reference."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        p = self.path / INDEX
        if not p.is_file():
            raise QuantfidError(f"no reference log-probs at {self.path}: run the benchmark on "
                                "the workspace's reference model first")
        try:
            self.meta: dict[str, Any] = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise FormatError(f"{p}: not valid JSON: {e}") from e
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise FormatError(f"{p}: format_version {self.meta.get('format_version')!r}, "
                              f"this quantfid reads {FORMAT_VERSION}")
        self._stores: dict[int, CompactStore] = {}

    @staticmethod
    def exists(path: Path) -> bool:
        return (Path(path) / INDEX).is_file()

    def locate(self, prompt_id: str, ids: np.ndarray) -> tuple[CompactStore, int]:
        """The store and window holding prompt ``prompt_id``, checked against its gold ids."""
        entry = self.meta["prompts"].get(prompt_id)
        if entry is None:
            raise MismatchError(f"{self.path}: prompt {prompt_id!r} is not in the reference store")
        n, w = int(entry[0]), int(entry[1])
        if n not in self._stores:
            self._stores[n] = CompactStore(self.path / f"L{n}")
        store = self._stores[n]
        stored = np.asarray(store.tokens[w])
        if len(ids) != n or not np.array_equal(stored, np.asarray(ids)):
            raise MismatchError(f"{self.path}: prompt {prompt_id!r} tokenizes differently from "
                                "the reference's run (another tokenizer or prompt text?)")
        return store, w


class PromptRows:
    """The reference rows of a prompt set as a reducer sees them (``kind``, ``rows(window,
    lo, hi)``), window = the index of a request in ``ids``' order."""

    kind = "compact"

    def __init__(self, store: PromptRefStore, prompt_ids: list[str], gold_ids: list[np.ndarray]) -> None:
        self.store = store
        self.prompt_ids = prompt_ids
        self.gold_ids = gold_ids
        self._where: dict[int, tuple[CompactStore, int]] = {}

    def rows(self, window: int, lo: int, hi: int) -> CompactRows:
        if window not in self._where:
            self._where[window] = self.store.locate(self.prompt_ids[window], self.gold_ids[window])
        store, w = self._where[window]
        return store.rows(w, lo, hi)
