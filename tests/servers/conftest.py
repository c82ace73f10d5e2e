"""Servers for the http backend's tests: llama-cpp-python's real server on the embedded GGUF
(one per session: start-up is the cost), the same model in-process to check it against, and
the in-repo vLLM / SGLang wire-format servers over that in-process model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
llama_cpp = pytest.importorskip("llama_cpp")
N_CTX = 512
THREADS = 1  # under contention (shared 2-core CI) two llama.cpp threads run 20x slower


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, log: Path, n_ctx: int = N_CTX) -> tuple[subprocess.Popen[bytes],
                                                                       str]:
    """``python -m llama_cpp.server`` on 127.0.0.1 (CPU, flash attention on, n_ctx larger than
    the windows, one batch per window as the in-process backend); waits until it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host",
           "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_batch", str(n_ctx),
           "--n_ubatch", str(n_ctx), "--flash_attn", "true", "--n_threads", str(THREADS),
           "--n_threads_batch", str(THREADS), "--verbose", "false"]
    fh = open(log, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fh.close()
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError(f"llama_cpp.server did not answer in 120 s: {log.read_text()[-2000:]}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def gguf() -> Path:
    from quantfid import embedded

    return embedded.gguf_path()


@pytest.fixture(scope="session")
def llama_server(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of llama-cpp-python's server on the embedded GGUF, torn down after the session."""
    proc, url = start_server(gguf, tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        yield url
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def inproc(gguf: Path) -> Any:
    """The same GGUF in-process, run as quantfid's llamacpp backend runs it."""
    return llama_cpp.Llama(model_path=str(gguf), n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                           logits_all=True, flash_attn=True, n_threads=THREADS,
                           n_threads_batch=THREADS, verbose=False)


@pytest.fixture(scope="session")
def model(inproc: Any) -> Any:
    from tests.servers.mock import Model

    return Model(inproc)


@pytest.fixture(scope="session")
def window_ids(inproc: Any) -> Any:
    """Two 96-token windows of the store's prose fixture (the model adds no BOS)."""
    import numpy as np

    text = (Path(__file__).parents[1] / "store" / "fixtures" / "prose.txt").read_text()
    ids = inproc.tokenize(text.encode(), add_bos=False, special=False)
    return np.asarray(ids[:192], np.int64).reshape(2, 96)


@pytest.fixture(scope="session")
def q4_0_gguf(gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded GGUF requantized to Q4_0 by llama.cpp's own quantizer (in-process)."""
    import ctypes

    out = tmp_path_factory.mktemp("quant") / "q4_0.gguf"
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, True, 1
    assert llama_cpp.llama_model_quantize(str(gguf).encode(), str(out).encode(),
                                          ctypes.byref(p)) == 0
    return out
