"""The sandbox: correct code passes, wrong code fails, loops time out, memory and network
are capped, and nothing runs in this process."""

from __future__ import annotations

import os

import pytest

from quantfid.bench.execute import check_humaneval, netns_prefix, run_untrusted
from quantfid.bench.tasks.humaneval_mc import load_problems

PROBLEMS = {p["task_id"]: p for p in load_problems()}


def test_canonical_solution_passes_and_wrong_one_fails() -> None:
    prob = PROBLEMS["HumanEval/0"]
    ok = check_humaneval(prob, prob["canonical_solution"], timeout_s=20)
    assert ok.passed and ok.status == "passed", ok.stderr_tail
    bad = check_humaneval(prob, "    return False\n", timeout_s=20)
    assert not bad.passed and bad.status == "failed" and "AssertionError" in bad.stderr_tail


def test_infinite_loop_times_out() -> None:
    r = run_untrusted("while True:\n    pass\n", timeout_s=2)
    assert not r.passed and r.status == "timeout" and r.seconds < 15


def test_memory_bomb_is_capped() -> None:
    r = run_untrusted("x = bytearray(8 * 1024 ** 3)\nprint('allocated')\n", memory_mb=512,
                      timeout_s=20)
    assert not r.passed and "MemoryError" in r.stderr_tail and "allocated" not in r.stdout_tail


def test_socket_connect_fails() -> None:
    code = ("import socket\ns = socket.socket()\ns.settimeout(2)\n"
            "s.connect(('127.0.0.1', 9))\nprint('connected')\n")
    r = run_untrusted(code, timeout_s=20)
    assert not r.passed and "connected" not in r.stdout_tail
    assert "OSError" in r.stderr_tail or "Error" in r.stderr_tail


@pytest.mark.skipif(netns_prefix() is None, reason="no network namespace (unshare -n) here")
def test_namespace_blocks_raw_socket() -> None:
    """Bypassing the prelude through _socket still finds no network in the namespace."""
    code = ("import _socket\ns = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
            "s.settimeout(2)\ns.connect(('127.0.0.1', 9))\nprint('connected')\n")
    r = run_untrusted(code, timeout_s=20, network="namespace")
    assert r.network == "namespace" and not r.passed and "connected" not in r.stdout_tail
    assert "Network is unreachable" in r.stderr_tail or "OSError" in r.stderr_tail


def test_runs_in_other_process_and_temp_dir() -> None:
    r = run_untrusted("import os\nprint(os.getpid(), os.getcwd())\n", timeout_s=20)
    pid, cwd = r.stdout_tail.split()
    assert r.passed and int(pid) != os.getpid() and "quantfid-exec-" in cwd
    assert not os.path.exists(cwd)  # cleaned up
