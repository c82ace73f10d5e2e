"""A small JSON-over-HTTP client: bearer key, timeout, retries with backoff, N in flight.

Standard library only (``urllib.request`` + ``concurrent.futures``). 5xx answers, refused or
reset connections and timeouts are retried ``retries`` times, waiting ``backoff_s * 2**i``
seconds; a 4xx answer is the caller's mistake and is not retried. Every failure becomes a
:class:`ServerError` (a QuantfidError) that names the URL, the request and the position
``what`` it was for; a body that is not JSON does too.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from quantfid.errors import QuantfidError

T = TypeVar("T")
U = TypeVar("U")

_RETRYABLE = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout,
              TimeoutError)


class ServerError(QuantfidError):
    """A server did not answer, answered with an error, or answered something unreadable."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class HttpClient:
    """JSON requests to one server (``base_url`` without a trailing slash)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 300.0,
                 retries: int = 3, backoff_s: float = 0.5, concurrency: int = 4,
                 verify_tls: bool = True) -> None:
        if concurrency < 1 or retries < 0 or timeout_s <= 0:
            raise QuantfidError(f"server options: concurrency >= 1, retries >= 0 and "
                                f"timeout_s > 0 (got {concurrency}, {retries}, {timeout_s})")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.concurrency = int(concurrency)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._ssl = None if verify_tls else ssl._create_unverified_context()
        self._pool: ThreadPoolExecutor | None = None
        self.n_retried = 0  # requests that needed another try (for reports and tests)

    # ---- one request -------------------------------------------------------------------
    def get(self, path: str, what: str = "") -> Any:
        return self.request("GET", path, None, what)

    def post(self, path: str, body: dict[str, Any], what: str = "") -> Any:
        return self.request("POST", path, body, what)

    def request(self, method: str, path: str, body: dict[str, Any] | None, what: str = "") -> Any:
        """The decoded JSON answer; ServerError after the retries are spent."""
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        where = f"{method} {url}" + (f" ({what})" if what else "")
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.n_retried += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            req = urllib.request.Request(url, data=data, headers=self._headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s, context=self._ssl) as r:
                    raw = r.read()
            except urllib.error.HTTPError as e:
                text = _body(e)
                if e.code < 500:
                    raise ServerError(f"{where}: the server answered {e.code}: {text}",
                                      e.code, text) from e
                last = f"{e.code} {text}"
                continue
            except _RETRYABLE as e:
                reason = getattr(e, "reason", e)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise ServerError(f"{where}: the server's TLS certificate is not trusted "
                                      f"({reason.verify_message}); for a self-signed one set "
                                      "option verify_tls=false") from e
                last = str(reason) or type(e).__name__
                continue
            return _decode(raw, where)
        raise ServerError(f"{where}: no answer after {self.retries + 1} tries ({last}); is the "
                          f"server running? (a re-run resumes from the finished units)")

    # ---- many requests ------------------------------------------------------------------
    def ordered(self, fn: Callable[[T], U], items: Iterable[T]) -> Iterator[U]:
        """``fn(item)`` for each item with up to ``concurrency`` running at once, yielded in
        order; the first failure is raised after every earlier result was yielded."""
        if self.concurrency == 1:
            for it in items:
                yield fn(it)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="quantfid-http")
        pending: deque[Future[U]] = deque()
        try:
            for it in items:
                pending.append(self._pool.submit(fn, it))
                if len(pending) >= self.concurrency:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _body(e: urllib.error.HTTPError) -> str:
    try:
        raw = e.read().decode("utf-8", "replace")
    except Exception:  # a broken error body is still an error
        return e.reason if isinstance(e.reason, str) else ""
    try:
        msg = json.loads(raw)
    except ValueError:
        return raw.strip()[:400]
    if isinstance(msg, dict):
        for key in ("message", "detail", "error"):
            v = msg.get(key)
            if isinstance(v, dict):
                v = v.get("message", v)
            if v:
                return str(v)[:400]
    return raw.strip()[:400]


def _decode(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as e:
        head = raw[:80].decode("utf-8", "replace")
        raise ServerError(f"{where}: the answer is not JSON ({e}; it starts {head!r})") from e
