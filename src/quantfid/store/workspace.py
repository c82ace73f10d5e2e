"""The workspace: one directory holding a study's manifest and tables.

Layout::

    W/quantfid.json            manifest (format_version, tool_version, reference, models,
                               corpora, benchmarks)
    W/tables/<table>/<part>.parquet
                               one Parquet file per unit of work; the part's schema
                               metadata carries ``format_version``, ``tool_version`` and
                               ``unit_hash`` (the hash of the unit's inputs)
    W/arrays/...               memory-mapped stores (reference log-probs, per-token arrays)

Tables (columns documented in ``docs/formats.md``): ``fidelity`` (one row per model x
corpus x ctx x scoring), ``tokens`` (per-token arrays), ``prompt_fidelity``, ``outcomes``.

Manifest section ``intersections`` (written by ``ingest --intersect``): benchmark ->
``{"prompts": [ids kept], "by": model}``. Rows of that benchmark whose prompt is not kept
stay in their parts but are left out by :meth:`Workspace.read_table` (and so by every
analysis) for the tables ``outcomes``, ``prompts`` and ``prompt_fidelity``;
:meth:`Workspace.clear_intersection` undoes it (``read_table(..., raw=True)`` sees all).

Values are checked at the boundary: outcome rows on write and on read (model, benchmark
and prompt id present, ``passed`` a boolean, ``score`` finite, ``samples`` >= 1), the
manifest's structure on every read; a violation is a FormatError naming the file or row.

A unit is done when its part exists with the expected ``unit_hash``; a re-run skips it,
a changed input (another hash) redoes it. Every write is atomic (temp file + rename) and
manifest updates hold an exclusive lock, so parallel workers cannot lose each other's
updates and a killed process leaves the previous state readable.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from quantfid import atomic
from quantfid._version import __version__
from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.boundary import (
    apply_intersections,
    check_manifest,
    check_outcome,
    check_outcome_table,
)

FORMAT_VERSION = 2
MANIFEST = "quantfid.json"
INTERSECTIONS = "intersections"
#: tables whose rows are keyed by (benchmark, prompt_id): recorded intersections apply
INTERSECTED_TABLES = ("outcomes", "prompts", "prompt_fidelity")
_PART_RE = re.compile(r"^[A-Za-z0-9._@+=,-]+$")


@dataclass(frozen=True)
class Part:
    """One table part of a unit's result: rows for ``tables/<table>/<name>.parquet``."""

    table: str
    name: str
    rows: pa.Table | list[dict[str, Any]]
    unit_hash: str


def _safe_part(name: str) -> str:
    """A part name usable as a file name (unsafe characters become '_')."""
    safe = re.sub(r"[^A-Za-z0-9._@+=,-]", "_", name)
    return safe[:200]


class Workspace:
    """A study directory. ``Workspace(path)`` opens it, creating it when ``create`` is true."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.exists():
            if not create:
                raise QuantfidError(f"{self.path} is not a quantfid workspace (no {MANIFEST})")
            if self.path.exists() and not self.path.is_dir():
                raise QuantfidError(f"{self.path} exists and is not a directory")
            self.path.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not manifest.exists():
                    atomic.write_json(manifest, self._empty_manifest())
        self._check_version(self.manifest)

    # ---- manifest -------------------------------------------------------------------
    @staticmethod
    def _empty_manifest() -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "tool": "quantfid", "tool_version": __version__,
                "reference": None, "models": {}, "corpora": {}, "benchmarks": {}}

    def _check_version(self, m: dict[str, Any]) -> None:
        v = m.get("format_version")
        if v != FORMAT_VERSION:
            raise FormatError(f"{self.path / MANIFEST}: workspace format_version {v!r}; this "
                              f"quantfid ({__version__}) reads version {FORMAT_VERSION}: "
                              "rebuild it by re-running its study or measure commands into a "
                              "new directory")

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as stored now (a fresh read each time), its structure checked."""
        p = self.path / MANIFEST
        try:
            m = json.loads(p.read_bytes().decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise FormatError(f"{p} is not valid JSON: {e}") from e
        if isinstance(m, dict) and m.get("format_version") != FORMAT_VERSION:
            return m  # refused with its version by _check_version, not by its structure
        check_manifest(m, p)
        return m

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the manifest under an exclusive lock, written atomically."""
        with self._locked():
            m = self.manifest
            yield m
            m["tool_version"] = __version__
            atomic.write_json(self.path / MANIFEST, m)

    # ---- models -----------------------------------------------------------------------
    def add_model(self, model: Model) -> None:
        """Register (or update) a model. A second, different reference is an error."""
        with self.update() as m:
            register_model(m, model, self.path)

    @property
    def reference(self) -> Model | None:
        """The workspace's one reference model, or None before one is set."""
        m = self.manifest
        ref = m.get("reference")
        return Model.from_dict(m["models"][ref]) if ref else None

    def require_reference(self) -> Model:
        ref = self.reference
        if ref is None:
            raise QuantfidError(f"workspace {self.path} has no reference model yet "
                                "(give --reference to measure, bench or ingest)")
        return ref

    def models(self, role: str | None = None) -> list[Model]:
        """All models (or those of ``role``), ordered by id (the manifest is stored key-sorted)."""
        out = [Model.from_dict(d) for d in self.manifest["models"].values()]
        return [x for x in out if role is None or x.role == role]

    def model(self, model_id: str) -> Model:
        d = self.manifest["models"].get(model_id)
        if d is None:
            known = ", ".join(self.manifest["models"]) or "none"
            raise QuantfidError(f"no model {model_id!r} in workspace {self.path} (models: {known})")
        return Model.from_dict(d)

    def set_entry(self, section: str, key: str, info: dict[str, Any]) -> None:
        """Record a corpus / benchmark (``section`` = 'corpora' | 'benchmarks' | any other)."""
        with self.update() as m:
            m.setdefault(section, {})[key] = info

    # ---- tables -----------------------------------------------------------------------
    def _part_path(self, table: str, part: str) -> Path:
        return self.path / "tables" / table / f"{_safe_part(part)}.parquet"

    def part_hash(self, table: str, part: str) -> str | None:
        """The ``unit_hash`` a stored part was written with, or None if it is absent."""
        p = self._part_path(table, part)
        if not p.exists():
            return None
        try:
            meta = pq.read_schema(p).metadata or {}
        except Exception as e:  # a corrupt part is as good as absent: it will be redone
            raise FormatError(f"{p} is not a readable Parquet file: {e}") from e
        h = meta.get(b"unit_hash")
        return h.decode("utf-8", "replace") if h is not None else None

    def has_part(self, table: str, part: str, unit_hash: str | None = None) -> bool:
        """True if ``part`` is stored (and, given ``unit_hash``, was made from those inputs)."""
        p = self._part_path(table, part)
        if not p.exists():
            return False
        return unit_hash is None or self.part_hash(table, part) == unit_hash

    def _encode(self, table: str, part: str, rows: pa.Table | Iterable[dict[str, Any]],
                unit_hash: str | None) -> bytes:
        tbl = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows))
        if table == "outcomes":
            check_outcome_table(tbl, f"outcomes part {part!r}")
        meta = dict(tbl.schema.metadata or {})
        meta.update({b"format_version": str(FORMAT_VERSION).encode(),
                     b"tool_version": __version__.encode(),
                     b"unit_hash": (unit_hash or "").encode(), b"part": part.encode()})
        buf = io.BytesIO()
        pq.write_table(tbl.replace_schema_metadata(meta), buf)
        return buf.getvalue()

    def write_part(self, table: str, part: str, rows: pa.Table | Iterable[dict[str, Any]],
                   unit_hash: str | None = None) -> Path:
        """Atomically write one unit's rows as ``tables/<table>/<part>.parquet``."""
        path = self._part_path(table, part)
        atomic.write_bytes(path, self._encode(table, part, rows, unit_hash))
        return path

    def commit(self, parts: Sequence[Part], models: Sequence[Model] = (),
               entries: Mapping[str, Mapping[str, dict[str, Any]]] | None = None, *,
               drops: Sequence[tuple[str, str]] = ()) -> None:
        """Store one unit's result together, under the workspace lock.

        The manifest gains ``models`` and ``entries`` (section -> key -> info; a key
        replaces the stored one) and loses nothing else; ``drops`` lists (table, part)
        to delete. A refused model (a second reference) fails before anything is written.
        Every part and the new manifest are first written to temporary files, then renamed
        into place, parts first and the manifest last: an error while writing (a full
        disk, a read-only file system) leaves the workspace as it was, and a kill during
        the renames leaves parts whose model the manifest does not list yet (ignored by
        readers, redone or re-registered by the next run), never a manifest entry without
        its data."""
        with self._locked():
            m: dict[str, Any] | None = None
            if models or entries:
                m = self.manifest
                for model in models:
                    register_model(m, model, self.path)
                for section, items in (entries or {}).items():
                    m.setdefault(section, {}).update(items)
                m["tool_version"] = __version__
                check_manifest(m, self.path / MANIFEST)
            staged: list[tuple[Path, Path]] = []
            manifest_tmp: Path | None = None
            new_dirs = [d for d in {self._part_path(p.table, p.name).parent for p in parts}
                        if not d.exists()]
            try:
                for p in parts:
                    dst = self._part_path(p.table, p.name)
                    data = self._encode(p.table, p.name, p.rows, p.unit_hash)
                    staged.append((atomic.stage_bytes(dst, data), dst))
                if m is not None:
                    manifest_tmp = atomic.stage_bytes(self.path / MANIFEST, atomic.json_bytes(m))
                while staged:
                    os.replace(*staged[0])
                    staged.pop(0)
                for table, name in drops:
                    self.drop_part(table, name)
                if manifest_tmp is not None:
                    os.replace(manifest_tmp, self.path / MANIFEST)
                    manifest_tmp = None
            except BaseException:
                for tmp in [t for t, _ in staged] + ([manifest_tmp] if manifest_tmp else []):
                    atomic.discard(tmp)
                for d in new_dirs:
                    with contextlib.suppress(OSError):  # only while still empty
                        d.rmdir()
                        if not any(d.parent.iterdir()):
                            d.parent.rmdir()
                raise

    def drop_part(self, table: str, part: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._part_path(table, part).unlink()

    def parts(self, table: str) -> list[Path]:
        d = self.path / "tables" / table
        return sorted(d.glob("*.parquet")) if d.exists() else []

    def read_part(self, path: Path) -> pa.Table:
        """One stored part (schema metadata kept), its format version and, for outcomes,
        its rows checked (see the module doc)."""
        try:
            t = pq.read_table(path)
            t.validate(full=True)  # e.g. strings that are not UTF-8
            "".join(t.schema.names)  # names are decoded lazily: a bad one raises here
        except Exception as e:  # pyarrow raises many types (ArrowInvalid, OSError...)
            raise FormatError(f"{path} is not a readable Parquet file: {e}") from e
        v = (t.schema.metadata or {}).get(b"format_version", b"?").decode("utf-8", "replace")
        if v != str(FORMAT_VERSION):
            raise FormatError(f"{path}: table format_version {v}, this quantfid reads {FORMAT_VERSION}")
        if path.parent.name == "outcomes":
            check_outcome_table(t, str(path))
        return t

    def read_table(self, table: str, raw: bool = False) -> pa.Table:
        """All parts of ``table`` concatenated (schemas unified); an empty table if none.
        Recorded intersections are applied unless ``raw`` (see the module doc)."""
        tables = [self.read_part(p).replace_schema_metadata(None) for p in self.parts(table)]
        if not tables:
            return pa.table({})
        try:
            out = pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise FormatError(f"{self.path}/tables/{table}: parts with incompatible columns: {e}") from e
        if raw or table not in INTERSECTED_TABLES:
            return out
        return apply_intersections(out, self.manifest.get(INTERSECTIONS) or {})

    def intersections(self) -> dict[str, list[str]]:
        """benchmark -> the prompt ids ``--intersect`` kept (absent: every prompt)."""
        return {b: list(r["prompts"]) for b, r in (self.manifest.get(INTERSECTIONS) or {}).items()}

    def clear_intersection(self, benchmark: str) -> bool:
        """Forget the intersection recorded for ``benchmark`` (every stored prompt is read
        again); True if there was one."""
        with self.update() as m:
            return (m.get(INTERSECTIONS) or {}).pop(benchmark, None) is not None

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.read_table(table).to_pylist()

    # ---- typed helpers ------------------------------------------------------------------
    def add_outcomes(self, part: str, outcomes: Iterable[Outcome], unit_hash: str | None = None) -> None:
        rows = [o.to_dict() for o in outcomes]
        if not rows:
            raise QuantfidError(f"no outcomes to store for {part}")
        for o in rows:
            check_outcome(o, part)
        self.write_part("outcomes", part, rows, unit_hash)

    def outcomes(self) -> list[Outcome]:
        return [Outcome.from_dict(r) for r in self.rows("outcomes")]

    def add_prompt_fidelity(self, part: str, rows: Iterable[PromptFidelity],
                            unit_hash: str | None = None) -> None:
        self.write_part("prompt_fidelity", part, [r.to_dict() for r in rows], unit_hash)

    def prompt_fidelity(self) -> list[PromptFidelity]:
        return [PromptFidelity.from_dict(r) for r in self.rows("prompt_fidelity")]

    def array_dir(self, *parts: str) -> Path:
        """A directory under ``arrays/`` for memory-mapped stores (created)."""
        d = self.path.joinpath("arrays", *(_safe_part(p) for p in parts))
        d.mkdir(parents=True, exist_ok=True)
        return d


def register_model(m: dict[str, Any], model: Model, path: Path) -> None:
    """Add ``model`` to manifest ``m``; a second, different reference is a MismatchError."""
    if model.role == "reference":
        cur = m.get("reference")
        if cur is not None and cur != model.id:
            raise MismatchError(
                f"workspace {path} already has reference {cur!r}; refusing to switch "
                f"to {model.id!r} (use a new workspace for another reference)")
        m["reference"] = model.id
    elif m.get("reference") == model.id:
        raise MismatchError(f"{model.id!r} is this workspace's reference; it cannot also be a quant")
    m["models"][model.id] = model.to_dict()
