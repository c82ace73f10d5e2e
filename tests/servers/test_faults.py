"""Faults against llama-cpp-python's real server: a 500 once (retried), an answer that is not
JSON or not in shape (a clear error naming the window and position), the server killed
mid-run (a clear error after every finished window was handed on, so a re-run that skips
finished units resumes where it stopped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.servers.conftest import start_server, stop_server
from tests.servers.helpers import RowsReducer
from tests.servers.mock import proxy

from quantfid.backends.http import open_http
from quantfid.backends.http.client import ServerError
from quantfid.errors import QuantfidError
from quantfid.models import parse_spec

pytestmark = pytest.mark.slow
CTX, START, STOP = 24, 12, 23


def llamacpp_corrupt(ans: Any, pos: int, body: Any = None) -> Any:
    if "choices" not in ans:
        return None  # not a completion
    ans["choices"][0]["logprobs"]["top_logprobs"][pos] = "garbage"  # entry i = position i
    return ans


def windows(window_ids: np.ndarray, n: int) -> np.ndarray:
    return window_ids.reshape(-1)[:n * CTX].reshape(n, CTX)


def test_500_once_is_retried(llama_server: str, gguf: Path, window_ids: np.ndarray) -> None:
    ids = windows(window_ids, 1)
    with proxy(llama_server, llamacpp_corrupt) as (url, faults):
        be = open_http(parse_spec(url, tokenizer=str(gguf), top_k=5, backoff_s=0.05))
        faults.fail = 1
        (_, (_, rows)), = list(be.score_windows(ids, START, STOP, RowsReducer()))
        assert be.client.n_retried == 1
        faults.fail = 0
        (_, (_, again)), = list(be.score_windows(ids, START, STOP, RowsReducer()))
    np.testing.assert_array_equal(rows.ids, again.ids)
    np.testing.assert_array_equal(rows.logp, again.logp)


def test_bad_answers_name_the_position(llama_server: str, gguf: Path,
                                       window_ids: np.ndarray) -> None:
    ids = windows(window_ids, 1)
    with proxy(llama_server, llamacpp_corrupt) as (url, faults):
        be = open_http(parse_spec(url, tokenizer=str(gguf), top_k=5, retries=0))
        faults.garbage = 1
        with pytest.raises(ServerError, match=r"\(window 0, positions 12..22.*\): the answer "
                           "is not JSON"):
            list(be.score_windows(ids, START, STOP, RowsReducer()))
        faults.corrupt, faults.corrupt_pos = 1, 15
        with pytest.raises(QuantfidError, match=r"window 0, positions 12..22, position 15: "
                           "expected an object of log-probs"):
            list(be.score_windows(ids, START, STOP, RowsReducer()))


def test_killed_mid_run(gguf: Path, tmp_path: Path, window_ids: np.ndarray) -> None:
    proc, url = start_server(gguf, tmp_path / "server.log", n_ctx=64)
    try:
        be = open_http(parse_spec(url, tokenizer=str(gguf), top_k=5, concurrency=1,
                                  retries=1, backoff_s=0.05, timeout_s=30))
        ids = windows(window_ids, 3)
        done: list[int] = []
        with pytest.raises(QuantfidError, match=r"window 1, positions 12..22.*\): no answer "
                           r"after 2 tries.*re-run resumes"):
            for w, _ in be.score_windows(ids, START, STOP, RowsReducer()):
                done.append(w)
                stop_server(proc)  # killed after the first window came back
        assert done == [0]
    finally:
        stop_server(proc)
