"""The http backend: a model behind an inference server, by capability (score, loglikelihood,
generate). Options and their defaults are in :mod:`quantfid.backends.http` and docs/servers.md.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from quantfid.backends.base import (
    Identity,
    LoglikRequest,
    LoglikResult,
    R,
    Reducer,
    TopKRows,
)
from quantfid.backends.http.client import HttpClient
from quantfid.backends.http.detect import DIALECTS, detect_dialect
from quantfid.backends.http.dialect import Dialect, Session, cut_at_stop
from quantfid.backends.http.vocab import LocalVocab
from quantfid.errors import MismatchError, QuantfidError
from quantfid.hashing import hash_json
from quantfid.models import ModelSpec
from quantfid.records import Model

DEFAULT_TOP_K = 20
PROBE_TEXT = ("The capital of France is Paris. Quantized models drift from their reference, "
              "token by token: 1, 2, 3, 5, 8, 13.")
_OPTIONS = {"dialect": str, "api_key_env": str, "top_k": int, "concurrency": int,
            "timeout_s": float, "retries": int, "backoff_s": float, "served_model": str,
            "tokenizer": str, "verify_tls": bool, "chosen_chunk": int, "loglik_top_k": int}


def _opts(spec: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, typ in _OPTIONS.items():
        v = spec.option(key)
        if v is None:
            continue
        try:
            out[key] = (str(v).lower() in ("1", "true", "yes")) if typ is bool and \
                isinstance(v, str) else typ(v)
        except (TypeError, ValueError):
            raise QuantfidError(f"server option {key}={v!r} is not a {typ.__name__}") from None
    return out


def _api_key(env: str | None) -> str | None:
    if not env:
        return None
    key = os.environ.get(env)
    if not key:
        raise QuantfidError(f"option api_key_env={env}: the environment variable {env} is not "
                            "set (it holds the server's API key, sent as a bearer token)")
    return key


class HttpBackend:
    """A model behind vLLM, SGLang or llama-cpp-python's server (the ``Backend`` protocol)."""

    name = "http"
    capabilities = frozenset({"score", "loglikelihood", "generate"})

    def __init__(self, spec: ModelSpec) -> None:
        o = _opts(spec)
        self.url = spec.source.rstrip("/")
        self.top_k = int(o.get("top_k", DEFAULT_TOP_K))
        if self.top_k < 1:
            raise QuantfidError(f"option top_k must be at least 1, got {self.top_k}")
        self.chosen_chunk = int(o.get("chosen_chunk", 16))
        self.client = HttpClient(self.url, api_key=_api_key(o.get("api_key_env")),
                                 timeout_s=o.get("timeout_s", 300.0),
                                 retries=o.get("retries", 3), backoff_s=o.get("backoff_s", 0.5),
                                 concurrency=o.get("concurrency", 4),
                                 verify_tls=o.get("verify_tls", True))
        name = o.get("dialect") or detect_dialect(self.client)
        if name not in DIALECTS:
            raise QuantfidError(f"unknown server dialect {name!r}; choose one of "
                                f"{', '.join(DIALECTS)}")
        self.session = Session(self.client, o.get("served_model"))
        self.dialect: Dialect = DIALECTS[name](self.session)
        served = self.dialect.model_id()
        self.session.model = self.session.model or served
        tok = o.get("tokenizer") or (served if name == "llamacpp" and
                                     os.path.isfile(served) else None)
        self.vocab = LocalVocab(tok) if tok else None
        self.session.vocab = self.vocab
        self.loglik_top_k = int(o.get("loglik_top_k", 1000 if name == "llamacpp" else 1))
        self._check_tokenizer()
        self.info = Model(id=spec.id, role=spec.role, source=self.url, format="server",
                          hash=self._probe_hash(served),
                          extra={"backend": "http", "dialect": name, "served_model": served,
                                 "top_k": self.top_k})

    # ---- identity ----------------------------------------------------------------------
    def identity(self) -> Identity:
        """Numerics name the dialect and K: a different K is a different measurement."""
        return Identity("http", "native", "remote", f"{self.dialect.name}-top{self.top_k}")

    def _probe_ids(self) -> np.ndarray:
        return np.asarray(self.dialect.tokenize(PROBE_TEXT), np.int64)

    def _probe_hash(self, served: str) -> str:
        """The served model id plus the next-token log-probs (to 1e-3 nats) and top-5 ids of
        a fixed probe prompt: another model behind the same URL hashes differently."""
        ids = self._probe_ids()
        first = self.dialect.first_position
        rows = self.dialect.score(ids, first, len(ids) - 1, 5, None, "the identity probe")
        top = np.where(rows.ids >= 0, rows.ids, -1)
        order = np.argsort(-np.where(top >= 0, rows.logp, -np.inf), axis=1, kind="stable")
        return hash_json({"served_model": served, "dialect": self.dialect.name,
                          "ids": ids.tolist(),
                          "target": [None if np.isnan(v) else round(float(v), 3)
                                     for v in rows.target_logp],
                          "top5": np.take_along_axis(top, order, axis=1).tolist()})

    # ---- tokenizer ---------------------------------------------------------------------
    def _check_tokenizer(self) -> None:
        if self.vocab is None:
            return
        server = self._probe_ids().tolist()
        local = self.vocab.tokenize(PROBE_TEXT)
        bos = self.vocab.bos()
        if server[:1] == [bos] and local[:1] != [bos]:
            server = server[1:]
        if server != local:
            raise MismatchError(f"the server at {self.url} tokenizes a probe text differently "
                                f"from the tokenizer option {self.vocab.source!r}: it is "
                                "another tokenizer, and log-probs over different token streams "
                                "cannot be compared")

    def _need_vocab(self, what: str) -> LocalVocab:
        if self.vocab is None:
            raise QuantfidError(f"{what} needs the model's tokenizer on this side: give option "
                                "tokenizer=<GGUF file, model directory or hub id> (servers do "
                                "not expose their vocabulary)")
        return self.vocab

    def vocab_size(self) -> int:
        return self._need_vocab("the vocabulary size").vocab_size()

    def tokenizer_id(self) -> str:
        """The tokenizer option's id (checked against the server when opened); without it, an
        id of the server's tokenization of the probe text, comparable only with other
        servers'."""
        if self.vocab is not None:
            return self.vocab.tokenizer_id()
        return "server-probe:" + hash_json({"probe": self._probe_ids().tolist()})

    def bos_id(self) -> int | None:
        v = self._need_vocab("the BOS id")
        return v.bos() if v.adds_bos() else None

    def eos_id(self) -> int | None:
        return self.vocab.eos() if self.vocab is not None else None

    def tokenize(self, text: str, bos: bool | None = None) -> np.ndarray:
        v = self._need_vocab("tokenizing")
        use = v.adds_bos() if bos is None else bos
        ids = v.tokenize(text)
        b = v.bos()
        return np.asarray(([b] if use and b is not None else []) + ids, np.int64)

    def detokenize(self, ids: Sequence[int]) -> str:
        return self._need_vocab("detokenizing").detokenize(ids).decode("utf-8", "replace")

    def close(self) -> None:
        self.client.close()

    # ---- score -------------------------------------------------------------------------
    def _tasks(self, ids: np.ndarray, start: int, stop: int, reducer: Reducer[R]
               ) -> Iterator[tuple[int, int, int, np.ndarray | None]]:
        """(window, p0, p1, wanted ids) per request, in order."""
        for w in range(ids.shape[0]):
            if not self.dialect.chosen_ids or reducer.wanted_ids(w, start, stop - start) is None:
                yield w, start, stop, None
                continue
            for p0 in range(start, stop, self.chosen_chunk):
                p1 = min(stop, p0 + self.chosen_chunk)
                want = reducer.wanted_ids(w, p0, p1 - p0)
                yield w, p0, p1, None if want is None else _unique_ids(want)

    def score_windows(self, ids: np.ndarray, start: int, stop: int, reducer: Reducer[R], *,
                      batch_size: int = 1) -> Iterator[tuple[int, R]]:
        """Teacher-forced top-K rows of positions ``start .. stop - 1`` of every window
        (``stop`` at most n_ctx - 1: the last position has no next token to check), one
        request per window (SGLang with chosen ids: per ``chosen_chunk`` positions), up to
        ``concurrency`` in flight; yields in order, so a failure surfaces after every earlier
        window was yielded. ``batch_size`` is accepted for the protocol."""
        windows = np.asarray(ids, np.int64)
        if windows.ndim != 2:
            raise QuantfidError(f"windows must be (n, n_ctx), got shape {windows.shape}")

        def run(task: tuple[int, int, int, np.ndarray | None]) -> tuple[int, int, TopKRows]:
            w, p0, p1, want = task
            what = f"window {w}, positions {p0}..{p1 - 1}"
            return w, p0, self.dialect.score(windows[w], p0, p1, self.top_k, want, what)

        for w, p0, rows in self.client.ordered(run, self._tasks(windows, start, stop, reducer)):
            yield w, reducer.topk(w, p0, rows)

    # ---- loglikelihood -----------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[LoglikRequest],
                      reducer: Reducer[R] | None = None, *,
                      batch_size: int = 8) -> Iterator[tuple[int, LoglikResult[R]]]:
        """Summed log-probs of each continuation from the prompt log-probs of its tokens
        (as lm-eval's ``local-completions``), one request per continuation; the gold
        sequence's rows go to ``reducer`` (positions from the server's first, 0 or 1)."""
        def run(i: int) -> tuple[int, LoglikResult[Any]]:
            return i, self._one_loglik(i, requests[i], reducer)

        yield from self.client.ordered(run, range(len(requests)))

    def _one_loglik(self, i: int, req: LoglikRequest, reducer: Reducer[R] | None
                    ) -> LoglikResult[R]:
        ll, greedy, reduced = [], [], []
        n_ctx = len(req.context)
        for c, cont in enumerate(req.continuations):
            seq = np.concatenate([req.context, cont]).astype(np.int64)
            gold = reducer is not None and c == req.gold
            start = self.dialect.first_position if gold else max(n_ctx - 1,
                                                                 self.dialect.first_position)
            if n_ctx - 1 < self.dialect.first_position:
                raise QuantfidError(f"request {req.id!r}: a one-token context; the "
                                    f"{self.dialect.name} server returns no distribution at "
                                    "position 0")
            k = self.top_k if gold else self.loglik_top_k
            what = f"request {req.id!r}, continuation {c}"
            rows = self._with_targets(self.dialect.score(seq, start, len(seq) - 1, k, None,
                                                         what), seq, n_ctx, start, what)
            part = slice(n_ctx - 1 - start, None)
            t_lp = rows.target_logp[part]
            ll.append(float(np.sum(t_lp.astype(np.float64))))
            top1 = _top1(rows)[part]
            greedy.append(bool(np.all(top1 == seq[n_ctx:])))
            if gold and reducer is not None:
                reduced.append(reducer.topk(i, start, rows))
        return LoglikResult(np.asarray(ll), np.asarray(greedy), reduced)

    def _with_targets(self, rows: TopKRows, seq: np.ndarray, n_ctx: int, start: int,
                      what: str) -> TopKRows:
        """``rows`` with every continuation token's log-prob filled in (the dialect's
        ``next_logprob`` where the scoring request left it unknown); QuantfidError if the
        server cannot give one."""
        t_lp = np.array(rows.target_logp, dtype=np.float64)
        for j in range(n_ctx - 1 - start, len(t_lp)):
            if np.isnan(t_lp[j]):
                t_lp[j] = self.dialect.next_logprob(seq, start + j, what)
            if np.isnan(t_lp[j]):
                raise QuantfidError(
                    f"{what}: the server did not return the log-prob of the token at "
                    f"position {start + j + 1}; use vLLM or SGLang, which return it")
        return dataclasses.replace(rows, target_logp=t_lp)

    # ---- generate ----------------------------------------------------------------------
    def generate(self, prompts: Sequence[str], *, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[int, str]]:
        """Greedy completions (temperature 0), cut before the first stop sequence."""
        def run(i: int) -> tuple[int, str]:
            text = self.dialect.generate(prompts[i], max_tokens, stop, f"prompt {i}")
            return i, cut_at_stop(text, stop)

        yield from self.client.ordered(run, range(len(prompts)))


def _top1(rows: TopKRows) -> np.ndarray:
    lp = np.where(rows.ids >= 0, rows.logp, -np.inf)
    return rows.ids[np.arange(len(rows)), np.argmax(lp, axis=1)]


def _unique_ids(want: np.ndarray) -> np.ndarray:
    w = np.asarray(want, np.int64).reshape(-1)
    return np.unique(w[w >= 0])
