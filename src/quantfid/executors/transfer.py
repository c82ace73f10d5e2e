"""Directories as bytes, for the trip between a Ray worker and the driver.

A unit run on a worker stages its array directories (a reference store, a prompt store) on
the worker's disk; they travel back to the driver as ``{relative path: bytes}`` and the
driver unpacks them under the workspace's staging directory before committing. Reference
stores travel the other way the same way when the workspace is not on shared storage.
Unpacking refuses absolute paths and ``..`` (the bytes come from another machine) and is
atomic: the directory appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from quantfid.errors import FormatError

Files = dict[str, bytes]


def pack_dir(path: Path) -> Files:
    """Every regular file under ``path``, by its POSIX path relative to ``path``."""
    root = Path(path)
    out: Files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def _safe(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if not p.parts or p.is_absolute() or any(part in ("", ".", "..") for part in p.parts):
        raise FormatError(f"refusing to unpack {rel!r}: not a plain relative path")
    return p


def unpack_dir(files: Files, dest: Path) -> Path:
    """Write ``files`` as the directory ``dest`` (built beside it, then renamed into place;
    an existing ``dest`` is replaced)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for rel, data in files.items():
            target = tmp.joinpath(*_safe(rel).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return dest


def size(files: Files) -> int:
    return sum(len(b) for b in files.values())
