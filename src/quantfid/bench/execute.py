"""Run untrusted (model-written) code against its tests in a separate, confined process.

Model-written code never runs in quantfid's own process. Each program runs as
``python -I prog.py`` (isolated mode: no user site, no PYTHON* variables, script dir
not trusted beyond itself) in a fresh temporary directory that is deleted afterwards,
with:

- a wall-clock timeout (the whole process group is killed) and RLIMIT_CPU;
- a memory cap: RLIMIT_AS set in the child (``preexec_fn``) before Python starts;
- RLIMIT_FSIZE (no large files) and RLIMIT_CORE = 0;
- no network: when ``unshare -n`` works here (root, or unprivileged user namespaces with
  ``unshare -rn``), the child gets a new, empty network namespace (no interface but a
  down loopback) - real isolation. Otherwise (``network="best-effort"``) a prelude
  replaces ``socket`` connect/bind/getaddrinfo with functions that raise; code that
  imports ``_socket`` directly can evade that, so it is best-effort only.
  ``ExecResult.network`` says which applied;
- a minimal environment (PATH, HOME and TMPDIR pointing into the temporary directory),
  stdin closed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from quantfid.errors import QuantfidError

_PRELUDE = '''\
import socket as _qf_socket
def _qf_deny(*args, **kwargs):
    raise OSError("network access is disabled in the quantfid sandbox")
for _qf_name in ("connect", "connect_ex", "bind", "sendto", "sendmsg"):
    setattr(_qf_socket.socket, _qf_name, _qf_deny)
_qf_socket.create_connection = _qf_deny
_qf_socket.getaddrinfo = _qf_deny
del _qf_socket, _qf_deny, _qf_name
'''


@dataclass(frozen=True)
class ExecResult:
    """passed: exit status 0 within the limits. status: passed | failed | timeout."""

    passed: bool
    status: str
    returncode: int | None
    seconds: float
    network: str
    stdout_tail: str
    stderr_tail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def netns_prefix() -> tuple[str, ...] | None:
    """The command prefix that gives a child its own empty network namespace, if any works."""
    exe = shutil.which("unshare")
    if exe is None:
        return None
    for prefix in ((exe, "-n"), (exe, "-rn")):
        try:
            r = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return prefix
    return None


def _limits(memory_bytes: int, cpu_s: int, fsize_bytes: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_untrusted(code: str, *, timeout_s: float = 10.0, memory_mb: int = 1024,
                  network: str = "auto", max_file_mb: int = 16) -> ExecResult:
    """Run ``code`` as a separate confined Python process; see the module docstring.

    network: ``"auto"`` (namespace when available, else best-effort), ``"namespace"``
    (refuse to run without one), ``"best-effort"`` (prelude only).
    """
    if network not in ("auto", "namespace", "best-effort"):
        raise QuantfidError(f"unknown network mode {network!r}")
    prefix = netns_prefix() if network != "best-effort" else None
    if network == "namespace" and prefix is None:
        raise QuantfidError("no network namespace available here (unshare -n failed); "
                            "use network='best-effort' to run with the socket prelude only")
    mode = "namespace" if prefix else "best-effort"
    tmp = tempfile.mkdtemp(prefix="quantfid-exec-")
    try:
        with open(os.path.join(tmp, "prog.py"), "w", encoding="utf-8") as fh:
            fh.write(_PRELUDE + code)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
        cmd = [*(prefix or ()), sys.executable, "-I", "prog.py"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=_limits(memory_mb << 20, int(timeout_s) + 1, max_file_mb << 20))
        try:
            out, err = proc.communicate(timeout=timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            status = "timeout"
        seconds = time.perf_counter() - t0
        if status == "failed" and proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
            status = "timeout"
        return ExecResult(passed=status == "passed", status=status, returncode=proc.returncode,
                          seconds=seconds, network=mode,
                          stdout_tail=out.decode("utf-8", "replace")[-2000:],
                          stderr_tail=err.decode("utf-8", "replace")[-2000:])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def humaneval_program(problem: dict[str, Any], completion: str) -> str:
    """HumanEval's check program: prompt + completion, the tests, then ``check(entry_point)``."""
    return (problem["prompt"] + completion + "\n\n" + problem["test"] + "\n"
            + f"check({problem['entry_point']})\n")


def check_humaneval(problem: dict[str, Any], completion: str, **kwargs: Any) -> ExecResult:
    """pass/fail of a HumanEval completion (pass@1 for one greedy sample)."""
    return run_untrusted(humaneval_program(problem, completion), **kwargs)
