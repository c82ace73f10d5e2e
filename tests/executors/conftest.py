"""A Ray cluster for the tests, on the loopback address only (``ray start --head --block``,
stopped with SIGTERM at the end), and the tiny study's config for it."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.fixtures.tiny_study import TINY_CONFIG, write_config

from .helpers import env


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]
    threads: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Cluster:
    """Two workers' worth of CPUs, each worker with the torch threads a local run here uses
    (so that both executors compute the same bits)."""
    pytest.importorskip("ray")
    import torch

    threads = torch.get_num_threads()
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="qfray", dir="/tmp")  # short: Ray's socket paths
    e = env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex)
    ray = Path(sys.executable).with_name("ray")
    log = open(Path(temp) / "head.log", "w")  # noqa: SIM115 (open for the fixture's life)
    head = subprocess.Popen(
        [str(ray), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         f"--num-cpus={2 * threads}", "--num-gpus=0", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        env=e, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.monotonic()
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if head.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f"ray start failed: {(Path(temp) / 'head.log').read_text()}")
            time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", e, threads)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_config(ray_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study, run on the test cluster (torch threads per unit as locally)."""
    text = TINY_CONFIG + f'\n[executor]\nkind = "ray"\nnum_cpus = {ray_cluster.threads}\n'
    return write_config(tmp_path_factory.mktemp("tiny-ray"), text)
