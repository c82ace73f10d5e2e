"""Calibration corpora, tokenization and llama.cpp-style windows.

Built-in corpora (all built offline from the running Python's standard library, so
they are deterministic for a given Python build; their sha256 is recorded with every
result, so two runs on different text are never mixed):

``prose``
    English prose: the prose paragraphs of the standard library's docstrings (module,
    class and function docstrings of a fixed, sorted list of modules, read with ``ast``;
    paragraphs with code, doctest prompts, tables or argument lists are dropped, exact
    duplicates kept once). Licence: PSF-2.0 (Python Software Foundation License).
``code``
    Source code: a fixed list of pure-Python standard-library modules, concatenated in
    that order, each preceded by a ``# file: <name>`` line. Licence: PSF-2.0.
``docs``
    Technical documentation: ``pydoc_data.topics``, the Python Language Reference and
    library topics that ``help()`` shows, rendered to plain text by Sphinx, topics in
    sorted order. Licence: PSF-2.0 (Python documentation).

Each is cut to at most ``BUILTIN_MAX_CHARS`` characters (about 100-200 k tokens for a
49 k BPE vocabulary: dozens of 2048-token windows).

User corpora: a text file, a directory (its files in sorted relative-path order, hidden
files skipped, joined by a blank line) or a JSONL field ``path.jsonl:field`` (the string
field of every line, joined by a blank line). Text must be UTF-8.

Windows (``make_windows``) follow llama.cpp's ``llama-perplexity`` (also its
``--kl-divergence`` mode): the token stream is cut into consecutive, non-overlapping
chunks of ``n_ctx`` tokens (a tail shorter than ``n_ctx`` is dropped); when the model adds
a BOS token, BOS *replaces* the first token of every chunk; with ``first = n_ctx // 2``
the logits at positions ``first .. n_ctx - 2`` are scored against the next tokens
``first + 1 .. n_ctx - 1``, i.e. ``n_ctx - 1 - n_ctx // 2`` tokens per chunk (255 at 512,
1023 at 2048). ``scoring="all"`` scores every position ``0 .. n_ctx - 2`` (each token after
the first). Targets are always the original tokens (a replaced token is never a target).
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import re
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.errors import FormatError, QuantfidError
from quantfid.hashing import hash_array, hash_bytes

SCORINGS: tuple[str, ...] = ("llamacpp", "all")
BUILTIN_MAX_CHARS = 600_000
PSF = "PSF-2.0 (Python Software Foundation License Version 2)"

# Pure-Python stdlib modules for the ``code`` corpus, in this (fixed) order.
CODE_MODULES: tuple[str, ...] = (
    "abc.py", "argparse.py", "ast.py", "base64.py", "bisect.py", "calendar.py",
    "collections/__init__.py", "configparser.py", "contextlib.py", "copy.py", "csv.py",
    "dataclasses.py", "datetime.py", "difflib.py", "enum.py", "fractions.py", "functools.py",
    "glob.py", "heapq.py", "inspect.py", "json/decoder.py", "json/encoder.py",
    "logging/__init__.py", "os.py", "pathlib.py", "pprint.py", "queue.py", "random.py",
    "shlex.py", "shutil.py", "statistics.py", "string.py", "tempfile.py", "textwrap.py",
    "threading.py", "tokenize.py", "typing.py", "uuid.py", "weakref.py", "zipfile.py",
)

# Stdlib directories whose docstrings are not used for ``prose`` (tests, demos, tools).
_PROSE_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages",
                    "ensurepip", "config-3", "__pycache__", "tkinter", "distutils"}


@dataclass(frozen=True)
class Corpus:
    """A calibration text. ``hash`` is the sha256 of ``text`` in UTF-8."""

    name: str
    text: str = field(repr=False)
    hash: str
    licence: str
    source: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The corpus record without its text (what a workspace stores)."""
        return {"name": self.name, "hash": self.hash, "licence": self.licence,
                "source": self.source, "n_chars": len(self.text), **self.extra}


def _make(name: str, text: str, licence: str, source: str, **extra: Any) -> Corpus:
    return Corpus(name=name, text=text, hash=hash_bytes(text.encode("utf-8")), licence=licence,
                  source=source, extra=extra)


def stdlib_dir() -> Path:
    """The running Python's standard-library directory."""
    return Path(sysconfig.get_paths()["stdlib"])


def _python_tag() -> str:
    return f"{sys.implementation.name}-{sys.version.split()[0]}"


# ---- built-in corpora ------------------------------------------------------------------
def _code_text(max_chars: int) -> tuple[str, list[str]]:
    root = stdlib_dir()
    parts: list[str] = []
    used: list[str] = []
    for rel in CODE_MODULES:
        path = root / rel
        if not path.is_file():
            continue
        parts.append(f"# file: {rel}\n{path.read_text(encoding='utf-8')}")
        used.append(rel)
        if sum(len(p) for p in parts) >= max_chars:
            break
    if not parts:
        raise QuantfidError(f"no standard-library sources found under {root}")
    return "\n\n".join(parts)[:max_chars], used


_CODEISH = re.compile(r"(>>>|\.\.\. |::|^\s|[{}\[\]=<>|#@$`\\]|\w\(|_\w|\w_)", re.MULTILINE)


def _is_prose(par: str) -> bool:
    """A docstring paragraph that reads as running English text."""
    if _CODEISH.search(par):
        return False
    flat = " ".join(par.split())
    words = flat.split(" ")
    if len(words) < 15 or not flat[0].isupper() or not flat.endswith((".", "?", "!")):
        return False
    letters = sum(c.isalpha() or c == " " for c in flat)
    return letters >= 0.9 * len(flat)


def _docstring_paragraphs(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out = []
    nodes: list[ast.AST] = [tree]
    nodes += [n for n in ast.walk(tree)
              if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)]
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        if not doc:
            continue
        for par in re.split(r"\n\s*\n", doc):
            if _is_prose(par):
                out.append(" ".join(par.split()))
    return out


def _prose_text(max_chars: int) -> tuple[str, int]:
    root = stdlib_dir()
    files = sorted(p for p in root.rglob("*.py")
                   if not (set(p.relative_to(root).parts[:-1]) & _PROSE_SKIP_DIRS)
                   and not p.relative_to(root).parts[0].startswith("config-"))
    seen: set[str] = set()
    paras: list[str] = []
    total = 0
    for path in files:
        for par in _docstring_paragraphs(path):
            if par in seen:
                continue
            seen.add(par)
            paras.append(par)
            total += len(par) + 2
        if total >= max_chars:
            break
    if not paras:
        raise QuantfidError(f"no prose docstrings found under {root}")
    return "\n\n".join(paras)[:max_chars], len(paras)


def _docs_text(max_chars: int) -> tuple[str, int]:
    try:
        topics: dict[str, str] = importlib.import_module("pydoc_data.topics").topics
    except ImportError as e:  # some distributions strip pydoc_data
        raise QuantfidError("the 'docs' corpus needs the standard-library module "
                            f"pydoc_data.topics, which this Python lacks: {e}") from e
    text = "\n\n".join(topics[k].strip() for k in sorted(topics))
    return text[:max_chars], len(topics)


def _build_prose(max_chars: int) -> Corpus:
    text, n = _prose_text(max_chars)
    return _make("prose", text, PSF, "docstring prose of the Python standard library",
                 python=_python_tag(), paragraphs=n)


def _build_code(max_chars: int) -> Corpus:
    text, files = _code_text(max_chars)
    return _make("code", text, PSF, "Python standard-library source files",
                 python=_python_tag(), files=files)


def _build_docs(max_chars: int) -> Corpus:
    text, n = _docs_text(max_chars)
    return _make("docs", text, PSF + "; Python documentation",
                 "pydoc_data.topics (Python Language Reference topics)",
                 python=_python_tag(), topics=n)


BUILTIN: dict[str, tuple[str, Callable[[int], Corpus]]] = {
    "prose": ("English prose: stdlib docstring paragraphs (PSF-2.0)", _build_prose),
    "code": ("Python source code: fixed list of stdlib modules (PSF-2.0)", _build_code),
    "docs": ("technical documentation: pydoc_data.topics (PSF-2.0)", _build_docs),
}


def builtin_names() -> list[str]:
    return list(BUILTIN)


@functools.lru_cache(maxsize=8)
def builtin(name: str, max_chars: int = BUILTIN_MAX_CHARS) -> Corpus:
    """A built-in corpus by name (cached per process)."""
    if name not in BUILTIN:
        raise QuantfidError(f"unknown corpus {name!r}; built-in corpora: {', '.join(BUILTIN)}")
    return BUILTIN[name][1](max_chars)


# ---- user corpora ----------------------------------------------------------------------
def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from e


def _from_jsonl(path: Path, key: str) -> Corpus:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{path}:{lineno}: invalid JSON: {e}") from e
            if not isinstance(obj, dict) or key not in obj:
                raise FormatError(f"{path}:{lineno}: no field {key!r}")
            if not isinstance(obj[key], str):
                raise FormatError(f"{path}:{lineno}: field {key!r} is not a string")
            texts.append(obj[key])
    if not texts:
        raise FormatError(f"{path}: no records")
    return _make(f"{path.stem}:{key}", "\n\n".join(texts), "user-supplied",
                 f"{path.resolve()}:{key}", records=len(texts))


def from_path(spec: str) -> Corpus:
    """A user corpus: a text file, a directory or ``file.jsonl:field``."""
    path = Path(spec)
    if not path.exists() and ":" in spec:
        file, key = spec.rsplit(":", 1)
        if Path(file).is_file() and key:
            return _from_jsonl(Path(file), key)
    if path.is_file():
        text = _read_utf8(path)
        if not text.strip():
            raise FormatError(f"{path}: empty corpus")
        return _make(path.stem, text, "user-supplied", str(path.resolve()))
    if path.is_dir():
        files = sorted((p for p in path.rglob("*") if p.is_file()
                        and not any(s.startswith(".") for s in p.relative_to(path).parts)),
                       key=lambda p: p.relative_to(path).as_posix())
        if not files:
            raise FormatError(f"{path}: directory has no files")
        text = "\n\n".join(_read_utf8(p) for p in files)
        return _make(path.name, text, "user-supplied", str(path.resolve()), files=len(files))
    raise QuantfidError(f"corpus {spec!r} is neither a built-in corpus ({', '.join(BUILTIN)}) "
                        "nor an existing file, directory or file.jsonl:field")


def load_corpus(spec: str) -> Corpus:
    """A built-in corpus by name, else a user corpus (use ``./name`` for a file named like
    a built-in)."""
    return builtin(spec) if spec in BUILTIN else from_path(spec)


# ---- tokens and windows ----------------------------------------------------------------
def tokenize(text: str, tokenizer: Any, bos_id: int | None = None) -> np.ndarray:
    """Token ids of ``text`` (int64), without special tokens, BOS prepended when given
    (as llama.cpp tokenizes its input with the model's ``add_bos`` setting)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    out = np.asarray(ids, dtype=np.int64)
    if bos_id is not None:
        out = np.concatenate([np.array([bos_id], dtype=np.int64), out])
    return out


def first_scored(n_ctx: int, scoring: str) -> int:
    """The first scored logit position of a window."""
    if scoring == "llamacpp":
        return n_ctx // 2
    if scoring == "all":
        return 0
    raise QuantfidError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")


@dataclass(frozen=True)
class Windows:
    """Consecutive ``n_ctx`` chunks of a token stream, with their model inputs and targets.

    tokens: (n, n_ctx) int64, the chunks as they are in the stream.
    ids: (n, n_ctx) model inputs: ``tokens`` with BOS in column 0 when ``bos_id`` is set.
    targets: (n, n_score) the original token following each scored position.
    first: the first scored logit position; positions ``first .. n_ctx - 2`` are scored.
    """

    tokens: np.ndarray
    n_ctx: int
    first: int
    scoring: str
    bos_id: int | None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def ids(self) -> np.ndarray:
        ids = self.tokens.copy()
        if self.bos_id is not None:
            ids[:, 0] = self.bos_id
        return ids

    @property
    def targets(self) -> np.ndarray:
        return self.tokens[:, self.first + 1:]

    @property
    def n_score(self) -> int:
        """Scored tokens per window: ``n_ctx - 1 - first``."""
        return self.n_ctx - 1 - self.first

    @property
    def n_tokens(self) -> int:
        return len(self) * self.n_score

    @property
    def hash(self) -> str:
        """sha256 over the tokens, BOS and scoring: two runs are comparable iff equal."""
        return hash_bytes(f"{hash_array(self.tokens)}/{self.bos_id}/{self.first}/"
                          f"{self.scoring}".encode())

    def to_json(self) -> dict[str, Any]:
        return {"n_windows": len(self), "n_ctx": self.n_ctx, "first": self.first,
                "n_score": self.n_score, "scoring": self.scoring, "bos_id": self.bos_id,
                "hash": self.hash}


def make_windows(tokens: Sequence[int] | np.ndarray, n_ctx: int, bos_id: int | None,
                 scoring: str = "llamacpp", max_chunks: int | None = None) -> Windows:
    """Cut ``tokens`` into ``len(tokens) // n_ctx`` chunks (at most ``max_chunks``).

    bos_id: the BOS id that replaces each chunk's first input token (llama.cpp does this
    only for models whose vocab sets ``add_bos``), or None to keep the tokens as they are.
    """
    toks = np.asarray(tokens, dtype=np.int64)
    if toks.ndim != 1:
        raise QuantfidError(f"tokens must be one-dimensional, got shape {toks.shape}")
    if n_ctx < 4:
        raise QuantfidError(f"context length {n_ctx} is too short (at least 4)")
    first = first_scored(n_ctx, scoring)
    n = len(toks) // n_ctx
    if max_chunks is not None:
        if max_chunks < 1:
            raise QuantfidError(f"--chunks must be at least 1, got {max_chunks}")
        n = min(n, max_chunks)
    if n == 0:
        raise QuantfidError(f"the corpus has {len(toks)} tokens, fewer than one window of "
                            f"{n_ctx}; use a longer corpus or a shorter context")
    chunks = toks[: n * n_ctx].reshape(n, n_ctx).copy()
    return Windows(tokens=chunks, n_ctx=n_ctx, first=first, scoring=scoring, bos_id=bos_id)
