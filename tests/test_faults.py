"""Fault injection on the tiny study: ``kill -9`` in each stage (reference, measure, bench,
report) then resume, and a full disk during a part write. Every interrupted workspace stays
readable, and the resumed one holds the uninterrupted run's data, byte for byte."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from tests.executors.helpers import (
    assert_same_data,
    data_files,
    driver_at,
    env,
    leftovers,
    run,
    study,
)
from tests.fixtures.tiny_study import copy_workspace

from quantfid import cli
from quantfid.store.workspace import MANIFEST, Workspace

pytestmark = pytest.mark.slow


def _readable(path: Path) -> None:
    ws = Workspace(path, create=False)
    assert ws.manifest["format_version"] == 2
    for table in sorted(p.name for p in (path / "tables").iterdir()) if (path / "tables").is_dir() else []:
        ws.read_table(table)


def test_kill_9_in_each_stage_then_resume_gives_the_uninterrupted_data(tiny_config, tiny_study,
                                                                       tmp_path):
    ws = tmp_path / "ws"
    cmd, environ = study(tiny_config, ws), env()
    for stage in ("reference", "measure", "bench", "report"):
        r = run(cmd, environ, tmp_path / f"trace-{stage}", when=driver_at(stage))
        assert r.returncode == -signal.SIGKILL, (stage, r.stderr[-2000:])
        assert r.trace[-1] == (r.signalled, stage)  # killed inside that stage
        _readable(ws)
    done = run(cmd, environ, tmp_path / "trace-last")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [s for _, s in done.trace if s in ("reference", "measure", "bench")] == []
    assert_same_data(ws, tiny_study)
    assert leftovers(ws) == []


class _FullDisk:
    """A file whose writes stop half-way with ENOSPC, as write(2) on a full disk."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def test_a_full_disk_during_a_part_write_is_one_clean_error_and_resumable(
        tiny_config, tiny_study, tmp_path, monkeypatch, capsys):
    ws = copy_workspace(tiny_study, tmp_path / "ws")
    for table in ("fidelity", "tokens"):  # Q4_0's fidelity unit is redone and written
        for p in (ws / "tables" / table).glob("Q4_0@*.parquet"):
            p.unlink()
    before = {k: p.read_bytes() for k, p in data_files(ws).items()}
    manifest = (ws / MANIFEST).read_bytes()
    real = os.fdopen

    def fdopen(fd, *args, **kwargs):
        fh = real(fd, *args, **kwargs)
        where = os.readlink(f"/proc/self/fd/{fd}")
        return _FullDisk(fh) if where.startswith(str(ws / "tables")) else fh

    monkeypatch.setattr(os, "fdopen", fdopen)
    capsys.readouterr()
    assert cli.main(["study", str(tiny_config), "--out", str(ws)]) == 2
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert [x for x in err.splitlines() if x.startswith("quantfid:")] == [
        "quantfid: error: No space left on device (no space left on the device; free some and "
        "re-run)"]
    assert "Traceback" not in err
    _readable(ws)
    assert {k: p.read_bytes() for k, p in data_files(ws).items()} == before  # nothing half-written
    assert (ws / MANIFEST).read_bytes() == manifest
    assert [x for x in leftovers(ws) if x.endswith(".tmp")] == []
    assert cli.main(["study", str(tiny_config), "--out", str(ws)]) == 0
    capsys.readouterr()
    assert_same_data(ws, tiny_study)
    assert leftovers(ws) == []
