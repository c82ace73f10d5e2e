"""vLLM's OpenAI-compatible server: prompt log-probs of token-id prompts.

Request (``POST /v1/completions``): ``prompt`` as a list of token ids, ``max_tokens: 1``,
``temperature: 0``, ``prompt_logprobs: K`` (a vLLM extra field; the server's
``--max-logprobs``, default 20, caps K). Answer: ``choices[0].prompt_logprobs``, a list as
long as the prompt whose first entry is null; entry j maps token ids (as strings) to
``{logprob, rank, decoded_token}`` for the distribution that predicts token j: the top K
(rank 1..K) plus token j itself when it ranks lower. Generation: ``prompt`` as text with
``stop``; tokenization: ``POST /tokenize``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.backends.http.client import ServerError
from quantfid.backends.http.dialect import (
    Dialect,
    as_float,
    as_int,
    build_rows,
    choice,
    completions_generate,
    first_model,
    malformed,
)
from quantfid.errors import QuantfidError


class VLLM(Dialect):
    name = "vllm"

    def model_id(self) -> str:
        return first_model(self.s.client.get("/v1/models", "the served model"),
                           "GET /v1/models")

    def score(self, ids: np.ndarray, start: int, stop: int, k: int,
              wanted: np.ndarray | None, what: str) -> TopKRows:
        self.check_range(ids, start, stop)
        body: dict[str, Any] = {"prompt": [int(i) for i in ids[:stop + 1]], "max_tokens": 1,
                                "temperature": 0.0, "prompt_logprobs": int(k)}
        if self.s.model:
            body["model"] = self.s.model
        try:
            ans = self.s.client.post("/v1/completions", body, what)
        except ServerError as e:
            if e.status == 400 and "logprobs" in e.body.lower():
                raise QuantfidError(f"{e} -- the server caps prompt log-probs below top_k={k}: "
                                    f"lower option top_k or restart vLLM with --max-logprobs "
                                    f"{k}") from e
            raise
        pl = choice(ans, what).get("prompt_logprobs")
        if not isinstance(pl, list) or len(pl) != stop + 1:
            n = len(pl) if isinstance(pl, list) else type(pl).__name__
            raise malformed(what, f"prompt_logprobs has {n} entries, expected {stop + 1}")
        tops, target = [], []
        for p in range(start, stop):
            top, t_lp = parse_entry(pl[p + 1], int(ids[p + 1]), k, what, p)
            tops.append(top)
            target.append(t_lp)
        return build_rows(tops, target, None, k)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str], what: str) -> str:
        return completions_generate(self.s, prompt, max_tokens, stop, what)

    def tokenize(self, text: str) -> list[int]:
        body: dict[str, Any] = {"prompt": text, "add_special_tokens": True}
        if self.s.model:
            body["model"] = self.s.model
        ans = self.s.client.post("/tokenize", body, "tokenize")
        toks = ans.get("tokens") if isinstance(ans, dict) else None
        if not isinstance(toks, list):
            raise malformed("tokenize", "no tokens list")
        return [as_int(t, "tokenize", None) for t in toks]


def parse_entry(entry: Any, target: int, k: int, what: str, pos: int
                ) -> tuple[list[tuple[int, float]], float]:
    """One prompt_logprobs entry: its top-K (id, log-prob) list and the target's log-prob."""
    if not isinstance(entry, dict) or not entry:
        raise malformed(what, f"expected an object of log-probs, got {entry!r}"[:200], pos)
    top: list[tuple[int, float]] = []
    t_lp = float("nan")
    for key, v in entry.items():
        tid = as_int(key, what, pos)
        if not isinstance(v, dict) or "logprob" not in v:
            raise malformed(what, f"entry for token {key} has no logprob", pos)
        lp = as_float(v["logprob"], what, pos)
        rank = v.get("rank")
        if tid == target:
            t_lp = lp
        in_top = (as_int(rank, what, pos) <= k) if rank is not None else \
            (tid != target or len(entry) <= k)
        if in_top:
            top.append((tid, lp))
    if np.isnan(t_lp):
        raise malformed(what, f"the log-prob of the next token {target} is missing", pos)
    return top, t_lp
