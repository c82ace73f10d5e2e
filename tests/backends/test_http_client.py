"""The JSON client over real HTTP (a stdlib server in a thread): retries, errors, bearer key,
requests in flight, results in order."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.servers.mock import serve

from quantfid.backends.http.client import HttpClient, ServerError


def echo_routes() -> dict[tuple[str, str], Any]:
    return {("POST", "/echo"): lambda b: (200, {"got": b}),
            ("GET", "/bad"): lambda _: (400, {"message": "no such thing"})}


def test_500_once_is_retried() -> None:
    with serve(echo_routes(), lambda a, p, b: a) as (url, faults):
        faults.fail = 1
        c = HttpClient(url, retries=2, backoff_s=0.01)
        assert c.post("/echo", {"x": 1}) == {"got": {"x": 1}}
        assert c.n_retried == 1


def test_retries_run_out_with_a_clear_error() -> None:
    with serve(echo_routes(), lambda a, p, b: a) as (url, faults):
        faults.fail = 5
        c = HttpClient(url, retries=2, backoff_s=0.01)
        with pytest.raises(ServerError, match=r"POST .*/echo \(window 3\): no answer after 3 "
                           r"tries \(500"):
            c.post("/echo", {}, "window 3")


def test_4xx_is_not_retried_and_quotes_the_server() -> None:
    with serve(echo_routes(), lambda a, p, b: a) as (url, _faults):
        c = HttpClient(url, retries=3, backoff_s=0.01)
        with pytest.raises(ServerError, match="answered 400: no such thing") as e:
            c.get("/bad")
        assert e.value.status == 400 and c.n_retried == 0


def test_not_json_is_a_clear_error() -> None:
    with serve(echo_routes(), lambda a, p, b: a) as (url, faults):
        faults.garbage = 1
        with pytest.raises(ServerError, match=r"\(window 0, positions 1..5\): the answer is not "
                           "JSON"):
            HttpClient(url).post("/echo", {}, "window 0, positions 1..5")


def test_connection_refused_is_retried_then_explained() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = HttpClient(f"http://127.0.0.1:{port}", retries=1, backoff_s=0.01)
    with pytest.raises(ServerError, match=r"no answer after 2 tries.*is the server running"):
        c.get("/v1/models")
    assert c.n_retried == 1


def test_bearer_key_is_sent() -> None:
    with serve(echo_routes(), lambda a, p, b: a, api_key="sekrit") as (url, faults):
        with pytest.raises(ServerError, match="401"):
            HttpClient(url).post("/echo", {})
        assert HttpClient(url, api_key="sekrit").post("/echo", {"a": 2}) == {"got": {"a": 2}}
        assert faults.seen[-1].endswith("Bearer sekrit")


def test_timeout() -> None:
    def slow(_: Any) -> tuple[int, Any]:
        time.sleep(1.0)
        return 200, {}

    with serve({("GET", "/slow"): slow}, lambda a, p, b: a) as (url, _), \
            pytest.raises(ServerError, match="no answer after 1 tries"):
        HttpClient(url, timeout_s=0.2, retries=0).get("/slow")


def test_ordered_keeps_n_in_flight_and_fails_after_earlier_results() -> None:
    lock = threading.Lock()
    running, peak = [0], [0]

    def work(i: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        if i == 5:
            raise ServerError("boom at 5")
        return i * i

    c = HttpClient("http://unused", concurrency=3)
    got: list[int] = []
    with pytest.raises(ServerError, match="boom at 5"):
        for r in c.ordered(work, range(10)):
            got.append(r)
    c.close()
    assert got == [0, 1, 4, 9, 16]
    assert peak[0] == 3


def test_bad_options() -> None:
    with pytest.raises(Exception, match="concurrency >= 1"):
        HttpClient("http://x", concurrency=0)


def test_https(tmp_path: Path) -> None:
    """https with a self-signed certificate: refused with a clear error unless verify_tls is
    off."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    with serve(echo_routes(), lambda a, p, b: a, tls=(str(cert), str(key))) as (url, _):
        assert url.startswith("https://")
        with pytest.raises(ServerError, match=r"TLS certificate is not trusted.*verify_tls=false"):
            HttpClient(url, retries=2, backoff_s=0.01).post("/echo", {})
        assert HttpClient(url, verify_tls=False).post("/echo", {"s": 1}) == {"got": {"s": 1}}
