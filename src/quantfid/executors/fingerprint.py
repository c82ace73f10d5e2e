"""What a worker must share with the driver: the quantfid version and the code itself.

The code hash covers every file of the installed ``quantfid`` package (sources and data,
``__pycache__`` left out), so two nodes with the same version number but edited sources
are told apart. Model files are checked per model when a worker opens one
(:meth:`quantfid.executors.worker.Worker.verify`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from quantfid._version import __version__


@dataclass(frozen=True)
class Fingerprint:
    version: str
    code: str

    def describe(self) -> str:
        return f"quantfid {self.version} (code {self.code[:12]})"


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 over the package's files: relative path, then bytes, in sorted order."""
    import quantfid

    root = Path(quantfid.__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc":
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def fingerprint() -> Fingerprint:
    return Fingerprint(__version__, code_hash())
