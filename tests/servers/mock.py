"""In-repo servers for the tests: vLLM's and SGLang's documented wire formats over a real
model (llama-cpp-python in-process), and a fault-injecting proxy.

Each runs a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 in a daemon thread. The model
answers are real log-probs (float32 log-softmax of llama.cpp's logits, as vLLM computes
them); the shapes follow the servers' documentation (see quantfid.backends.http.vllm and
.sglang), written independently of the client's parsers.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np


class Model:
    """llama-cpp-python's Llama (logits_all) behind a lock: log-probs and greedy text."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.lock = threading.Lock()

    def logprobs(self, ids: list[int]) -> np.ndarray:
        """(len(ids), V) float32 log-probs of every position's next-token distribution."""
        with self.lock:
            self.llm.reset()
            self.llm.eval(ids)
            x = np.array(self.llm.scores[:len(ids)], dtype=np.float32)
        m = x.max(axis=1, keepdims=True)
        return (x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))).astype(np.float32)

    def tokenize(self, text: str) -> list[int]:
        with self.lock:
            return list(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def complete(self, prompt: str, max_tokens: int, stop: list[str]) -> str:
        with self.lock:
            out = self.llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0,
                                             stop=stop or None)
        return str(out["choices"][0]["text"])


def top(lp: np.ndarray, k: int) -> list[int]:
    """Ids of the k largest log-probs, largest first (ties: lower id first)."""
    part = np.argpartition(-lp, k - 1)[:k]
    return [int(i) for i in part[np.lexsort((part, -lp[part]))]]


def rank(lp: np.ndarray, tid: int) -> int:
    return int(np.sum(lp > lp[tid])) + 1


@dataclass
class Faults:
    """Answers to inject: ``fail`` 500s, then ``garbage`` non-JSON bodies, then
    ``corrupt`` answers with the log-prob at ``corrupt_pos`` replaced by a string."""

    fail: int = 0
    garbage: int = 0
    corrupt: int = 0
    corrupt_pos: int = 1
    seen: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
            pass

    def _handle(self, method: str) -> None:
        srv = self.server
        srv.faults.seen.append(f"{method} {self.path} {self.headers.get('Authorization')}")
        if srv.api_key and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            return self._send(401, {"error": {"message": "Invalid API key"}})
        if srv.faults.fail > 0:
            srv.faults.fail -= 1
            return self._send(500, {"error": "injected failure"})
        if srv.faults.garbage > 0:
            srv.faults.garbage -= 1
            return self._send(200, None, raw=b'{"choices": [ truncated')
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        route = srv.routes.get((method, self.path))
        if route is None:
            return self._send(404, {"detail": "Not Found"})
        code, ans = route(body)
        if srv.faults.corrupt > 0 and code == 200:
            bad = srv.corrupt(ans, srv.faults.corrupt_pos, body)  # None: not this answer
            if bad is not None:
                srv.faults.corrupt -= 1
                ans = bad
        self._send(code, ans)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


Route = Callable[[Any], tuple[int, Any]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[tuple[str, str], Route]
    faults: Faults
    api_key: str | None
    corrupt: Callable[[Any, int, Any], Any]


# ---- vLLM ------------------------------------------------------------------------------
def vllm_routes(model: Model, name: str, max_logprobs: int) -> dict[tuple[str, str], Route]:
    def completions(body: dict[str, Any]) -> tuple[int, Any]:
        prompt = body["prompt"]
        if isinstance(prompt, str):
            text = model.complete(prompt, int(body.get("max_tokens", 16)), body.get("stop") or [])
            return 200, {"object": "text_completion", "model": name,
                         "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}
        k = int(body.get("prompt_logprobs") or 0)
        if k > max_logprobs:
            return 400, {"object": "error", "message": f"Requested prompt logprobs of {k}, "
                         f"which is greater than max allowed: {max_logprobs}", "code": 400}
        lp = model.logprobs(prompt)
        entries: list[Any] = [None]
        for j in range(1, len(prompt)):
            row = lp[j - 1]
            ent = {str(i): {"logprob": float(row[i]), "rank": r + 1,
                            "decoded_token": ""} for r, i in enumerate(top(row, k))}
            tok = int(prompt[j])
            if str(tok) not in ent:
                ent[str(tok)] = {"logprob": float(row[tok]), "rank": rank(row, tok),
                                 "decoded_token": ""}
            entries.append(ent)
        return 200, {"object": "text_completion", "model": name, "choices": [
            {"index": 0, "text": "", "finish_reason": "length", "logprobs": None,
             "prompt_logprobs": entries}]}

    return {("GET", "/v1/models"): lambda _: (200, {"object": "list", "data": [
                {"id": name, "object": "model", "owned_by": "vllm", "max_model_len": 512}]}),
            ("POST", "/v1/completions"): completions,
            ("POST", "/tokenize"): lambda b: (200, {"tokens": model.tokenize(b["prompt"]),
                                                     "max_model_len": 512})}


def vllm_corrupt(ans: Any, pos: int, body: Any = None) -> Any:
    ent = ans["choices"][0]["prompt_logprobs"][pos + 1]
    key = next(iter(ent))
    ent[key]["logprob"] = "not a number"
    return ans


# ---- SGLang ----------------------------------------------------------------------------
def sglang_routes(model: Model, name: str) -> dict[tuple[str, str], Route]:
    def generate(body: dict[str, Any]) -> tuple[int, Any]:
        sp = body.get("sampling_params") or {}
        if "text" in body and not body.get("return_logprob"):
            text = model.complete(body["text"], int(sp.get("max_new_tokens", 16)),
                                  sp.get("stop") or [])
            return 200, {"text": text, "meta_info": {"id": "0"}}
        ids = body["input_ids"] if "input_ids" in body else model.tokenize(body["text"])
        lp = model.logprobs(ids)
        s = int(body.get("logprob_start_len", 0))
        k = int(body.get("top_logprobs_num") or 0)
        chosen = body.get("token_ids_logprob")
        tok, top_l, ch_l = [], [], []
        for j in range(s, len(ids)):  # an entry per input token from s on
            if j == 0:
                tok.append([None, int(ids[0]), None])
                top_l.append(None)
                ch_l.append(None)
                continue
            row = lp[j - 1]
            tok.append([float(row[ids[j]]), int(ids[j]), None])
            top_l.append([[float(row[i]), i, None] for i in top(row, k)] if k else None)
            ch_l.append([[float(row[i]), int(i), None] for i in chosen] if chosen else None)
        meta = {"id": "0", "prompt_tokens": len(ids), "input_token_logprobs": tok,
                "input_top_logprobs": top_l}
        if chosen is not None:
            meta["input_token_ids_logprobs"] = ch_l
        return 200, {"text": "", "meta_info": meta}

    return {("GET", "/get_model_info"): lambda _: (200, {
                "model_path": name, "tokenizer_path": name, "is_generation": True}),
            ("POST", "/generate"): generate}


def sglang_corrupt(ans: Any, pos: int, body: Any = None) -> Any:
    first = int((body or {}).get("logprob_start_len", 0))  # entries from token `first` on
    ans["meta_info"]["input_top_logprobs"][pos + 1 - first] = "garbage"
    return ans


@contextmanager
def serve(routes: dict[tuple[str, str], Route], corrupt: Callable[[Any, int, Any], Any],
          api_key: str | None = None, tls: tuple[str, str] | None = None
          ) -> Iterator[tuple[str, Faults]]:
    """Run a server with these routes (https with ``tls`` = (cert file, key file)); yields
    (base URL, its Faults)."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.faults, srv.api_key, srv.corrupt = routes, Faults(), api_key, corrupt
    scheme = "http"
    if tls is not None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"{scheme}://127.0.0.1:{srv.server_address[1]}", srv.faults
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(timeout=5)


# ---- a fault-injecting proxy in front of a real server ------------------------------------
def proxy_routes(target: str) -> Callable[[str, str, Any], tuple[int, Any]]:
    def forward(method: str, path: str, body: Any) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(target + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    return forward


@contextmanager
def proxy(target: str, corrupt: Callable[[Any, int, Any], Any]) -> Iterator[tuple[str, Faults]]:
    """A proxy to ``target`` with the same fault injection as the mock servers."""
    forward = proxy_routes(target)

    class Routes(dict):  # type: ignore[type-arg]
        def get(self, key: Any, default: Any = None) -> Route:
            return lambda body: forward(key[0], key[1], body)

    with serve(Routes(), corrupt) as out:
        yield out
