"""llama-cpp-python's server (``python -m llama_cpp.server``): echoed prompt log-probs.

It takes prompts as text only and keys log-probs by token text, and its echo log-probs are
shifted (``../shared/FACTS.md``). What it does, read from llama-cpp-python 0.3.36: for a
prompt of n tokens (BOS included when the model adds one) it evaluates every position and
builds one entry per position i = 0 .. n - 1 (the distribution after token i, predicting
token i + 1); entry 0 is nulled, and entries whose echoed token is BOS are dropped. Entry
i's ``top_logprobs`` maps the text of each of the top K ids to its log-prob, then adds the
echoed token's text with that token's log-prob under the same distribution. The echoed
token is token i + 1 when the model adds BOS (then ``token_logprobs[i]`` is the next
token's log-prob) and token i when it does not (then the next token's log-prob is known only
when it is among the top K; the echoed token's is a log-prob of a known id all the same).

So quantfid sends the window as text (its own detokenization, special tokens as text),
refuses a window that ``POST /extras/tokenize`` does not turn back into the same ids, maps
text keys to ids with the GGUF's pieces, and realigns entry i to position i (position 0 is
never returned). A key several ids share (byte fragments, special tokens: 380 of SmolLM2's
49152 ids, mostly ``''`` and ``' '``) cannot name its id: every id sharing it is reported
among the top K with an unknown log-prob (NaN in ``TopKRows.logp``, so the fidelity bounds
claim no cap for them), and ``collisions`` counts such keys. The echoed token's log-prob is
read from ``token_logprobs`` (exact, its id is known). Continuation scoring needs every
next token's log-prob: one outside the echo's top K is read by :meth:`next_logprob`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.backends.http.dialect import (
    Dialect,
    Session,
    as_float,
    as_int,
    build_rows,
    choice,
    completions_generate,
    first_model,
    malformed,
)
from quantfid.errors import QuantfidError


class LlamaCppPython(Dialect):
    name = "llamacpp"
    first_position = 1

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.collisions = 0  # returned keys that several ids share
        self.shared_targets = 0  # next tokens read as the most probable id of a shared text
        self._lock = threading.Lock()
        self._keys: tuple[dict[str, int], dict[str, list[int]]] | None = None
        self._adds_bos: bool | None = None

    def model_id(self) -> str:
        return first_model(self.s.client.get("/v1/models", "the served model"),
                           "GET /v1/models")

    def tokenize(self, text: str, what: str = "tokenize") -> list[int]:
        ans = self.s.client.post("/extras/tokenize", {"input": text}, what)
        toks = ans.get("tokens") if isinstance(ans, dict) else None
        if not isinstance(toks, list):
            raise malformed(what, "no tokens list")
        return [as_int(t, what, None) for t in toks]

    def adds_bos(self) -> bool:
        if self._adds_bos is None:
            bos = self._vocab().bos()
            self._adds_bos = bos is not None and self.tokenize("a")[:1] == [bos]
        return self._adds_bos

    def _vocab(self) -> Any:
        if self.s.vocab is None or not self.s.vocab.is_gguf:
            raise QuantfidError("llama-cpp-python's server takes text and keys log-probs by "
                                "text: give option tokenizer=<the served GGUF file>")
        return self.s.vocab

    def text_of(self, ids: np.ndarray, what: str) -> str:
        """The prompt text for ``ids``; QuantfidError unless the server tokenizes it back."""
        vocab = self._vocab()
        bos = vocab.bos()
        body = ids[1:] if self.adds_bos() and len(ids) and int(ids[0]) == bos else ids
        if self.adds_bos() and (not len(ids) or int(ids[0]) != bos):
            raise QuantfidError(f"{what}: the served model puts BOS in front of every prompt, "
                                "this sequence does not start with it")
        try:
            text = vocab.detokenize(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise QuantfidError(f"{what}: cuts a multi-byte character ({e.reason} at byte "
                                f"{e.start}); llama-cpp-python's server takes text only: use "
                                "vLLM or SGLang, which take token ids") from e
        back = self.tokenize(text, f"{what}, tokenizing its text")
        if back != [int(i) for i in ids]:
            n = min(len(back), len(ids))
            at = next((i for i in range(n) if back[i] != int(ids[i])), n)
            raise QuantfidError(f"{what}: the server tokenizes the text of this sequence "
                                f"differently from position {at} on ({len(back)} ids instead "
                                f"of {len(ids)}); llama-cpp-python's server takes text only: "
                                "use vLLM or SGLang, which take token ids")
        return text

    def score(self, ids: np.ndarray, start: int, stop: int, k: int,
              wanted: np.ndarray | None, what: str) -> TopKRows:
        self.check_range(ids, start, stop)
        seq = ids[:stop + 1]
        tops, tok_lp, entries = self._echo(seq, k, what)
        rows_top, target, chosen = [], [], []
        for p in range(start, stop):
            e = entries[p]
            top, t_lp, extra = self._entry(tops[e], tok_lp[e], seq, p, k, what)
            rows_top.append(top)
            target.append(t_lp)
            chosen.append(extra)
        return build_rows(rows_top, target, chosen, k)

    def _echo(self, seq: np.ndarray, k: int, what: str
              ) -> tuple[list[Any], list[Any], dict[int, int]]:
        """One echo request: (top_logprobs, token_logprobs, entry index of each position)."""
        lp = self._completion(seq, k, True, what)
        tops, tok_lp = lp.get("top_logprobs"), lp.get("token_logprobs")
        if not isinstance(tops, list) or not isinstance(tok_lp, list) or \
                len(tops) != len(tok_lp):
            raise malformed(what, "top_logprobs / token_logprobs missing or of different "
                            "lengths")
        return tops, tok_lp, self._positions(seq, len(tops), what)

    def next_logprob(self, ids: np.ndarray, p: int, what: str) -> float:
        """log q(ids[p + 1] | ids[:p + 1]) from a request without echo: the generated token's
        top log-probs over the whole vocabulary are aligned and complete (one request, about
        0.25 s at 49k ids). A text key other ids share holds the least probable of them;
        asking again for the top r + 1 (r: the key's rank) leaves only the most probable,
        taken as the target (the others are mostly byte fragments; ``shared_targets``
        counts these). NaN when the server does not return the key."""
        target = int(ids[p + 1])
        key = self._vocab().pieces()[target]
        top = self._next_top(ids[:p + 1], self._vocab().vocab_size(), what)
        if key not in top:
            return float("nan")
        if key in self._piece_keys()[1]:
            top = self._next_top(ids[:p + 1], list(top).index(key) + 1, what)
            with self._lock:
                self.shared_targets += 1
        return as_float(top.get(key), what, p)

    def _next_top(self, ids: np.ndarray, k: int, what: str) -> dict[str, Any]:
        lp = self._completion(ids, k, False, what)
        tops = lp.get("top_logprobs")
        if not isinstance(tops, list) or not tops or not isinstance(tops[0], dict):
            raise malformed(what, "no top_logprobs for the generated token")
        return tops[0]

    def _completion(self, ids: np.ndarray, k: int, echo: bool, what: str) -> dict[str, Any]:
        """``choices[0].logprobs`` of a one-token greedy completion of ``ids``' text with the
        top ``k`` log-probs per entry (echoing the prompt's entries or not)."""
        body: dict[str, Any] = {"prompt": self.text_of(ids, what), "logprobs": int(k),
                                "max_tokens": 1, "temperature": 0.0}
        if echo:
            body["echo"] = True
        if self.s.model:
            body["model"] = self.s.model
        lp = choice(self.s.client.post("/v1/completions", body, what), what).get("logprobs")
        if not isinstance(lp, dict):
            raise malformed(what, "choices[0].logprobs is not an object")
        return lp

    def _positions(self, seq: np.ndarray, n_entries: int, what: str) -> dict[int, int]:
        """Entry index of each position: entries go with positions 0 .. n - 1 except those
        whose echoed token is BOS (dropped by the server)."""
        bos = self._vocab().bos()
        shift = 1 if self.adds_bos() else 0
        out: dict[int, int] = {}
        e = 0
        for p in range(len(seq)):
            echoed = int(seq[p + shift]) if p + shift < len(seq) else None
            if echoed is not None and echoed == bos:
                continue
            out[p] = e
            e += 1
        # the last entry echoes the generated token (unknown here): it may have been dropped
        if n_entries not in (e, e - 1) or (n_entries == e - 1 and shift == 0):
            raise malformed(what, f"{n_entries} log-prob entries for a {len(seq)}-token prompt")
        return out

    def _entry(self, top: Any, tok_lp: Any, seq: np.ndarray, p: int, k: int, what: str
               ) -> tuple[list[tuple[int, float]], float, list[tuple[int, float]]]:
        """(top-K ids and log-probs, the next token's log-prob, [(echoed id, log-prob)]).

        A key several ids share marks all of them as among the top K with an unknown
        log-prob (NaN): one of them is, and no cap may be claimed for any."""
        if not isinstance(top, dict):
            raise malformed(what, f"expected an object of log-probs, got {top!r}"[:200], p)
        unique, shared = self._piece_keys()
        echoed = int(seq[p + 1]) if self.adds_bos() else int(seq[p])
        echo_lp = as_float(tok_lp, what, p)  # the echoed token's own log-prob, exact
        items = list(top.items())
        # the echoed token's key is added last; when it is last, leave it out of the top K
        # (if it was a top-K key, the cap from the other K - 1 is looser, still valid)
        if items and items[-1][0] == self._vocab().pieces()[echoed]:
            items = items[:-1]
        out: list[tuple[int, float]] = []
        for key, v in items:
            val = as_float(v, what, p)
            if key in unique:
                out.append((unique[key], val))
                continue
            with self._lock:
                self.collisions += 1
            out.extend((i, float("nan")) for i in shared.get(key, []))
        target = int(seq[p + 1])
        if self.adds_bos():  # the echoed token is the next token
            return out, echo_lp, []
        if target == echoed:  # a repeated token: its own log-prob is the target's
            return out, echo_lp, [(echoed, echo_lp)]
        t_lp = next((val for i, val in out if i == target), float("nan"))
        return out, t_lp, [(echoed, echo_lp)]

    def _piece_keys(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        if self._keys is None:
            self._keys = self._vocab().piece_ids()
        return self._keys

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str], what: str) -> str:
        return completions_generate(self.s, prompt, max_tokens, stop, what)
