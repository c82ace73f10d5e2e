"""The common header of quantfid's reference log-prob stores (full and compact).

A store holds, for ``n_windows`` windows of ``ctx`` token ids, the reference model's
log-probabilities at the scored positions of each window. Scored positions follow the
``scoring`` convention: position ``i`` (its logits predict token ``i + 1``) is scored
for ``first <= i <= ctx - 2``, so every window scores ``n_scored = ctx - 1 - first``
tokens. Conventions:

- ``"llamacpp"``: ``first = ctx // 2`` (llama-perplexity: 255 scored tokens at ctx 512;
  BOS replaces each window's first token when the model is run);
- ``"all"``: ``first = 0`` (every token after the first is scored).

The header is ``meta.json`` in the store directory; the window token ids are
``tokens.npy`` (int32, shape (n_windows, ctx)) and their hash is in the header, so a
reader can refuse a quant measured on other tokens (``check_compatible``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np

from quantfid._version import __version__
from quantfid.corpus import first_scored
from quantfid.errors import FormatError, MismatchError
from quantfid.hashing import hash_array

FORMAT_VERSION = 1
META_NAME = "meta.json"
TOKENS_NAME = "tokens.npy"


def tokens_hash(tokens: np.ndarray) -> str:
    """sha256 of the window token ids as int32, C order (shape included)."""
    return hash_array(np.ascontiguousarray(tokens, dtype=np.int32))


@dataclass(frozen=True)
class StoreMeta:
    """Header of a reference store. ``kind`` is ``"full"`` or ``"compact"``.

    ``extra`` holds the kind's own settings (dtype, mass target, ...).
    """

    kind: str
    model_id: str
    tokenizer_id: str
    vocab_size: int
    ctx: int
    scoring: str = "llamacpp"
    model_hash: str | None = None
    corpus_hash: str | None = None
    n_windows: int = 0
    tokens_hash: str | None = None
    format_version: int = FORMAT_VERSION
    tool_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ctx < 2:
            raise MismatchError(f"context length must be >= 2, got {self.ctx}")
        if self.vocab_size < 1:
            raise MismatchError(f"vocab size must be >= 1, got {self.vocab_size}")
        first_scored(self.ctx, self.scoring)

    @property
    def first(self) -> int:
        """First scored position of each window."""
        return first_scored(self.ctx, self.scoring)

    @property
    def n_scored(self) -> int:
        """Scored tokens per window: ``ctx - 1 - first``."""
        return self.ctx - 1 - self.first

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_json(obj: dict[str, Any], source: str = "meta.json") -> StoreMeta:
        if not isinstance(obj, dict):
            raise FormatError(f"{source}: expected a JSON object")
        version = obj.get("format_version")
        if version != FORMAT_VERSION:
            raise FormatError(f"{source}: format_version {version!r}, this quantfid reads "
                              f"{FORMAT_VERSION} only")
        names = {f.name for f in dataclasses.fields(StoreMeta)}
        unknown = sorted(set(obj) - names)
        if unknown:
            raise FormatError(f"{source}: unknown header fields {unknown}")
        try:
            return StoreMeta(**obj)
        except TypeError as e:
            raise FormatError(f"{source}: bad header: {e}") from e

    def save(self, directory: Path) -> None:
        """Write ``meta.json`` into ``directory`` (not atomic by itself: see the writers)."""
        (directory / META_NAME).write_text(json.dumps(self.to_json(), indent=2, sort_keys=True)
                                           + "\n")

    @staticmethod
    def load(directory: str | Path) -> StoreMeta:
        path = Path(directory) / META_NAME
        if not path.is_file():
            raise FormatError(f"{directory}: not a quantfid store (no {META_NAME})")
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise FormatError(f"{path}: unreadable header: {e}") from e
        return StoreMeta.from_json(obj, str(path))



def load_tokens(path: Path, meta: StoreMeta, name: str) -> np.ndarray:
    """Memory-map a store's token ids and check their shape and hash against the header."""
    try:
        tokens: np.ndarray = np.load(path / name, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise FormatError(f"{path / name}: unreadable: {e}") from e
    want = (meta.n_windows, meta.ctx)
    if tokens.shape != want:
        raise FormatError(f"{path / name}: shape {tokens.shape}, header says {want}")
    if tokens_hash(np.asarray(tokens)) != meta.tokens_hash:
        raise FormatError(f"{path}: token ids do not match the header's tokens_hash")
    return tokens

def _first_token_difference(a: np.ndarray, b: np.ndarray) -> str:
    if a.shape != b.shape:
        return f"shape {a.shape} vs {b.shape}"
    diff = np.argwhere(a != b)
    if diff.size == 0:
        return "identical ids"
    idx = tuple(int(i) for i in diff[0])
    return f"first difference at (window, position) {idx}: {int(a[idx])} vs {int(b[idx])}"


def check_compatible(meta: StoreMeta, other: StoreMeta | None = None, *,
                     tokens: np.ndarray | None = None, stored_tokens: np.ndarray | None = None,
                     tokenizer_id: str | None = None, vocab_size: int | None = None,
                     ctx: int | None = None, scoring: str | None = None) -> None:
    """Refuse to compare against ``meta`` when anything that defines the token stream differs.

    Compares ``meta`` with another header ``other`` (tokenizer, vocab size, context length,
    scoring, token ids by hash) and/or with the given values. ``tokens`` (shape
    (n_windows, ctx) or flat) is checked against ``meta.tokens_hash``; ``stored_tokens``
    (the store's own ids), when given, lets the error name the first differing position.
    Raises ``MismatchError`` naming the field and both values.
    """
    checks: list[tuple[str, Any, Any]] = []
    if other is not None:
        checks += [("tokenizer_id", meta.tokenizer_id, other.tokenizer_id),
                   ("vocab_size", meta.vocab_size, other.vocab_size),
                   ("ctx", meta.ctx, other.ctx),
                   ("scoring", meta.scoring, other.scoring),
                   ("n_windows", meta.n_windows, other.n_windows),
                   ("tokens_hash", meta.tokens_hash, other.tokens_hash)]
    for name, value in (("tokenizer_id", tokenizer_id), ("vocab_size", vocab_size),
                        ("ctx", ctx), ("scoring", scoring)):
        if value is not None:
            checks.append((name, getattr(meta, name), value))
    for name, mine, theirs in checks:
        if mine != theirs:
            raise MismatchError(f"reference store and input disagree on {name}: "
                                f"store has {mine!r}, input has {theirs!r}")
    if tokens is not None:
        arr = np.asarray(tokens)
        if arr.ndim == 1 and arr.size % meta.ctx == 0:
            arr = arr.reshape(-1, meta.ctx)
        got = tokens_hash(arr)
        if got != meta.tokens_hash:
            detail = ""
            if stored_tokens is not None:
                detail = "; " + _first_token_difference(np.asarray(stored_tokens), arr)
            raise MismatchError(f"reference store and input disagree on token ids: store "
                                f"tokens_hash {meta.tokens_hash}, input {got}{detail}")


class StoreDirWriter:
    """Builds a store directory atomically: everything goes into a hidden sibling temp
    directory; ``commit(meta)`` writes ``meta.json`` last, fsyncs, and renames it onto the
    target. A reader requires ``meta.json`` in the target, so an interrupted write (temp
    directory left behind, target absent or still the previous store) is never accepted.
    """

    def __init__(self, path: str | os.PathLike[str], overwrite: bool = False) -> None:
        import tempfile

        self.path = Path(path)
        if self.path.exists() and not _replaceable(self.path, overwrite):
            raise MismatchError(f"{self.path} exists and is not an empty directory; "
                                "pass overwrite=True to replace it")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                         dir=self.path.parent))
        self.overwrite = overwrite
        self.done = False

    def file(self, name: str) -> Path:
        return self.tmp / name

    def commit(self, meta: StoreMeta, tokens: np.ndarray) -> None:
        import shutil

        np.save(self.tmp / TOKENS_NAME, np.ascontiguousarray(tokens, dtype=np.int32))
        meta.save(self.tmp)
        for p in self.tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if self.path.exists():
            if not _replaceable(self.path, self.overwrite):
                raise MismatchError(f"{self.path} appeared while writing; not replaced")
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        self.done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        import shutil

        if not self.done:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.done = True


def _replaceable(path: Path, overwrite: bool) -> bool:
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    return overwrite and (path / META_NAME).is_file()


def as_float_rows(x: Any, n: int, vocab: int, what: str) -> np.ndarray:
    """(n, vocab) float32/float64 numpy rows from numpy or torch; finite; else a clear error."""
    from quantfid.errors import QuantfidError

    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    arr = np.asarray(x)
    if arr.shape != (n, vocab):
        raise MismatchError(f"{what}: expected shape ({n}, {vocab}), got {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        if not np.issubdtype(arr.dtype, np.floating):
            raise QuantfidError(f"{what}: expected floating point values, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
    bad = ~np.isfinite(arr)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise QuantfidError(f"{what}: non-finite value {arr[r, c]} at (token {r}, vocab {c})")
    return arr


def log_softmax64(x: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (max-shifted log-sum-exp)."""
    x = np.asarray(x, dtype=np.float64)
    m = x.max(axis=1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))


class StoreWriterBase:
    """The life cycle both store writers share: append windows, then commit atomically
    (``close``) or discard (``abort``); as a context manager, an exception aborts."""

    meta: StoreMeta
    _dir: StoreDirWriter
    _tokens: list[np.ndarray]

    @property
    def n_windows(self) -> int:
        return len(self._tokens)

    def _window_tokens(self, window_tokens: Any) -> np.ndarray:
        """Check one appended window's ``ctx`` token ids (numpy or torch)."""
        m = self.meta
        tok = np.asarray(window_tokens.cpu().numpy() if hasattr(window_tokens, "cpu")
                         else window_tokens)
        if tok.shape != (m.ctx,):
            raise MismatchError(f"window {self.n_windows}: expected {m.ctx} token ids, "
                                f"got shape {tok.shape}")
        if not np.issubdtype(tok.dtype, np.integer):
            raise MismatchError(f"window {self.n_windows}: token ids must be integers, "
                                f"got dtype {tok.dtype}")
        return tok

    def _window_inputs(self, window_logp: Any, window_tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """Check one appended window: its ``ctx`` token ids and its (n_scored, V) rows."""
        m = self.meta
        tok = self._window_tokens(window_tokens)
        rows = as_float_rows(window_logp, m.n_scored, m.vocab_size, f"window {self.n_windows}")
        return tok, rows

    def _close_files(self) -> None:
        """Close open data files before commit or abort (none by default)."""

    def _commit(self) -> None:
        self._close_files()
        tokens = (np.stack(self._tokens) if self._tokens
                  else np.zeros((0, self.meta.ctx), np.int32))
        meta = StoreMeta(**{**self.meta.to_json(), "n_windows": len(self._tokens),
                            "tokens_hash": tokens_hash(tokens)})
        self._dir.commit(meta, tokens)

    def close(self) -> Any:
        raise NotImplementedError

    def abort(self) -> None:
        self._close_files()
        self._dir.abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is not None:
            self.abort()
        elif not self._dir.done:
            self.close()
