"""Running ``quantfid study`` in a subprocess and signalling it (or one of its Ray workers)
when a chosen stage starts, from the stage trace (``QUANTFID_STAGE_TRACE``, one line
``<pid> <stage>`` per stage started). Shared by the Ray and fault-injection tests."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
Lines = list[tuple[int, str]]
Trigger = Callable[[Lines, int], "int | None"]


def env(**extra: str) -> dict[str, str]:
    """This process's environment, with the repository's sources first on the path."""
    path = os.pathsep.join([str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path.rstrip(os.pathsep), "HF_HUB_OFFLINE": "1", **extra}


def study(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "quantfid", "study", str(config), "--out", str(out), *extra]


def read_trace(path: Path) -> Lines:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        pid, _, stage = line.partition(" ")
        if pid.isdigit() and stage:
            out.append((int(pid), stage))
    return out


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    trace: Lines  # every stage line of the run (read after it ended)
    signalled: int | None  # the pid that got the signal
    at: Lines  # the trace when the signal was sent


def run(cmd: list[str], environ: dict[str, str], trace: Path, when: Trigger | None = None,
        sig: int = signal.SIGKILL, timeout: float = 900.0) -> Run:
    """Run ``cmd`` with the stage trace in ``trace``; once ``when(lines, driver_pid)`` names a
    pid, send it ``sig`` (once), then wait for the driver to end."""
    trace.unlink(missing_ok=True)
    logs = trace.with_suffix(".out"), trace.with_suffix(".err")
    with open(logs[0], "w") as out, open(logs[1], "w") as err:
        p = subprocess.Popen(cmd, env={**environ, "QUANTFID_STAGE_TRACE": str(trace)},
                             stdout=out, stderr=err, cwd=REPO)
        signalled, at = None, []
        t0 = time.monotonic()
        try:
            while p.poll() is None:
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"{cmd} still running after {timeout} s")
                if when is not None and signalled is None:
                    lines = read_trace(trace)
                    pid = when(lines, p.pid)
                    if pid is not None:
                        os.kill(pid, sig)
                        signalled, at = pid, lines
                time.sleep(0.01)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    return Run(p.returncode, logs[0].read_text(), logs[1].read_text(), read_trace(trace),
               signalled, at)


def driver_at(stage: str) -> Trigger:
    """The driver itself, as soon as it starts ``stage``."""
    return lambda lines, driver: driver if (driver, stage) in lines else None


def worker_at(stage: str) -> Trigger:
    """The first Ray worker (any pid but the driver's) that starts ``stage``."""
    def pick(lines: Lines, driver: int) -> int | None:
        return next((pid for pid, s in lines if s == stage and pid != driver), None)

    return pick


def driver_when_a_worker_at(stage: str) -> Trigger:
    """The driver, as soon as one of its Ray workers starts ``stage``."""
    return lambda lines, driver: driver if worker_at(stage)(lines, driver) else None


def gone(pids: set[int], within: float) -> bool:
    """Whether every process in ``pids`` has ended within ``within`` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        alive = set()
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.add(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        time.sleep(0.2)
    return False


def data_files(ws: Path) -> dict[str, Path]:
    """Every table part and array file of a workspace, by relative path."""
    return {p.relative_to(ws).as_posix(): p for d in ("tables", "arrays")
            for p in sorted((ws / d).rglob("*")) if p.is_file()}


def assert_same_data(ws: Path, expected: Path) -> None:
    """The same parts and arrays, byte for byte, and the same summary apart from provenance
    (timings, times, paths, units run)."""
    got, want = data_files(ws), data_files(expected)
    assert sorted(got) == sorted(want)
    differ = [k for k in want if not filecmp.cmp(got[k], want[k], shallow=False)]
    assert differ == [], f"{len(differ)} file(s) differ from {expected}: {differ[:20]}"
    a, b = (json.loads((w / "summary.json").read_text()) for w in (ws, expected))
    a.pop("provenance")
    b.pop("provenance")
    assert a == b


def leftovers(ws: Path) -> list[str]:
    """Temporary files or staging directories left in a workspace."""
    tmp = [p.relative_to(ws).as_posix() for p in ws.rglob("*") if p.name.endswith(".tmp")]
    staging = ws / ".staging"
    return tmp + ([p.name for p in staging.iterdir()] if staging.is_dir() else [])


def mtimes(ws: Path) -> dict[str, int]:
    return {k: p.stat().st_mtime_ns for k, p in data_files(ws).items()}
