"""SGLang's native ``POST /generate``: prompt log-probs of token ids, and of chosen ids.

Request: ``input_ids``, ``sampling_params: {max_new_tokens: 1, temperature: 0}``,
``return_logprob: true``, ``logprob_start_len: s``, ``top_logprobs_num: K`` and, to get the
log-probs of ids the caller names at every position, ``token_ids_logprob: [ids]``;
``return_text_in_logprobs: false``. Answer: ``meta_info.input_token_logprobs`` (one
``[logprob, token_id, text]`` per input token from s on; the first token of a prompt has a
null log-prob), ``input_top_logprobs`` and ``input_token_ids_logprobs`` (per input token a
list of ``[logprob, token_id, text]``). The entry of token j is the distribution at position
j - 1. Versions differ on whether token s itself has an entry; the count tells which.
Generation: ``text`` with ``sampling_params.stop``; tokenization: the ids of a text prompt's
``input_token_logprobs``; the model: ``GET /get_model_info`` (``model_path``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.backends.http.dialect import (
    Dialect,
    as_float,
    as_int,
    build_rows,
    malformed,
)


class SGLang(Dialect):
    name = "sglang"
    chosen_ids = True

    def model_id(self) -> str:
        ans = self.s.client.get("/get_model_info", "the served model")
        if not isinstance(ans, dict) or "model_path" not in ans:
            raise malformed("GET /get_model_info", "no model_path")
        return str(ans["model_path"])

    def _post(self, body: dict[str, Any], what: str) -> dict[str, Any]:
        if self.s.model and "model" not in body:
            body["model"] = self.s.model
        ans = self.s.client.post("/generate", body, what)
        if isinstance(ans, list) and len(ans) == 1:
            ans = ans[0]
        if not isinstance(ans, dict):
            raise malformed(what, "the answer is not an object")
        return ans

    def score(self, ids: np.ndarray, start: int, stop: int, k: int,
              wanted: np.ndarray | None, what: str) -> TopKRows:
        self.check_range(ids, start, stop)
        body: dict[str, Any] = {
            "input_ids": [int(i) for i in ids[:stop + 1]],
            "sampling_params": {"max_new_tokens": 1, "temperature": 0.0},
            "return_logprob": True, "logprob_start_len": int(start), "top_logprobs_num": int(k),
            "return_text_in_logprobs": False}
        if wanted is not None:
            body["token_ids_logprob"] = [int(i) for i in wanted]
        meta = self._post(body, what).get("meta_info")
        if not isinstance(meta, dict):
            raise malformed(what, "no meta_info")
        toks, top = meta.get("input_token_logprobs"), meta.get("input_top_logprobs")
        if not isinstance(toks, list) or not isinstance(top, list) or len(toks) != len(top):
            raise malformed(what, "input_token_logprobs and input_top_logprobs missing or of "
                            "different lengths")
        n, want = len(top), stop - start
        if n not in (want, want + 1):
            raise malformed(what, f"{n} log-prob entries for positions {start}..{stop - 1}")
        skip = n - want  # 1 when token `start` has its own entry
        chosen_all = meta.get("input_token_ids_logprobs") if wanted is not None else None
        if wanted is not None and (not isinstance(chosen_all, list) or len(chosen_all) != n):
            raise malformed(what, "input_token_ids_logprobs missing or of the wrong length")
        tops, target, chosen = [], [], []
        for p in range(start, stop):
            e = p - start + skip
            t_lp, t_id = _triple(toks[e], what, p)
            if t_id != int(ids[p + 1]):
                raise malformed(what, f"entry is for token {t_id}, expected {int(ids[p + 1])} "
                                "(misaligned answer)", p)
            target.append(t_lp)
            tops.append(_triples(top[e], what, p))
            if chosen_all is not None:
                chosen.append(_triples(chosen_all[e], what, p))
        return build_rows(tops, target, chosen if wanted is not None else None, k)

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str], what: str) -> str:
        ans = self._post({"text": prompt, "sampling_params": {
            "max_new_tokens": int(max_tokens), "temperature": 0.0, "stop": list(stop)}}, what)
        text = ans.get("text")
        if not isinstance(text, str):
            raise malformed(what, "text is not a string")
        return text

    def tokenize(self, text: str) -> list[int]:
        ans = self._post({"text": text, "sampling_params": {"max_new_tokens": 1,
                                                            "temperature": 0.0},
                          "return_logprob": True, "logprob_start_len": 0}, "tokenize")
        meta = ans.get("meta_info")
        toks = meta.get("input_token_logprobs") if isinstance(meta, dict) else None
        if not isinstance(toks, list):
            raise malformed("tokenize", "no meta_info.input_token_logprobs")
        return [_triple(t, "tokenize", None, allow_null=True)[1] for t in toks]


def _triple(x: Any, what: str, pos: int | None, allow_null: bool = False) -> tuple[float, int]:
    if not isinstance(x, list | tuple) or len(x) < 2:
        raise malformed(what, f"expected [logprob, token_id, text], got {x!r}"[:200], pos)
    if x[0] is None and allow_null:
        return float("nan"), as_int(x[1], what, pos)
    return as_float(x[0], what, pos), as_int(x[1], what, pos)


def _triples(x: Any, what: str, pos: int) -> list[tuple[int, float]]:
    if x is None:
        return []
    if not isinstance(x, list):
        raise malformed(what, f"expected a list of [logprob, token_id, text], got {x!r}"[:200],
                        pos)
    out = []
    for t in x:
        lp, tid = _triple(t, what, pos)
        out.append((tid, lp))
    return out
