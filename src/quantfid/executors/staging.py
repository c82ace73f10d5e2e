"""Each run's staging directory, ``<workspace>/.staging/<executor>-<host>-<pid>-<random>``.

Units stage new array directories there (on the workspace's file system, so a commit is a
rename). A run removes its own directory when it ends; a run killed with SIGKILL cannot, so
every run first removes the directories of runs on this host whose process is gone (a
directory of another host, or of a live process, is left alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(staging: Path) -> None:
    """Remove the staging directories left by dead runs on this host."""
    host = socket.gethostname()
    if not staging.is_dir():
        return
    for d in staging.iterdir():
        parts = d.name.split("-")
        if len(parts) < 4 or not d.is_dir() or "-".join(parts[1:-2]) != host:
            continue
        with contextlib.suppress(ValueError):
            if int(parts[-2]) != os.getpid() and not _alive(int(parts[-2])):
                shutil.rmtree(d, ignore_errors=True)


def new(ws_path: Path, executor: str) -> Path:
    """A fresh staging directory for this run (after sweeping dead runs' ones)."""
    staging = ws_path / ".staging"
    staging.mkdir(exist_ok=True)
    sweep(staging)
    prefix = f"{executor}-{socket.gethostname()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=staging))
