"""What every server dialect provides, and the helpers their parsers share.

A dialect turns "score positions start .. stop - 1 of this token sequence, top K" into one
request and its answer into :class:`~quantfid.backends.base.TopKRows`, where row i is the
distribution at position ``start + i`` (predicting ``ids[start + i + 1]``). Anything in an
answer that is not where the documented shape puts it raises :class:`MalformedAnswer`,
naming the request and the position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.backends.http.client import HttpClient, ServerError
from quantfid.backends.http.vocab import LocalVocab
from quantfid.errors import QuantfidError


class MalformedAnswer(ServerError):
    """A JSON answer that does not have the documented shape."""


def malformed(what: str, detail: str, pos: int | None = None) -> MalformedAnswer:
    at = f", position {pos}" if pos is not None else ""
    return MalformedAnswer(f"malformed answer from the server for {what}{at}: {detail}")


@dataclass
class Session:
    """What a dialect needs: the client, the served model name, the local tokenizer."""

    client: HttpClient
    model: str | None = None
    vocab: LocalVocab | None = None


class Dialect:
    """Base class: ``name``, whether it can return chosen ids, and the four requests."""

    name = "?"
    chosen_ids = False  # can return the log-probs of ids the caller names (SGLang)
    first_position = 0  # the first position whose distribution the server returns

    def __init__(self, session: Session) -> None:
        self.s = session

    def model_id(self) -> str:
        raise NotImplementedError

    def score(self, ids: np.ndarray, start: int, stop: int, k: int,
              wanted: np.ndarray | None, what: str) -> TopKRows:
        raise NotImplementedError

    def next_logprob(self, ids: np.ndarray, p: int, what: str) -> float:
        """log q(ids[p + 1] | ids[:p + 1]) when ``score`` left it unknown; NaN where the
        dialect has no other way to ask (vLLM and SGLang always return it)."""
        return float("nan")

    def generate(self, prompt: str, max_tokens: int, stop: Sequence[str], what: str) -> str:
        raise NotImplementedError

    def tokenize(self, text: str) -> list[int]:
        """The ids the server makes of ``text`` as a prompt (BOS included if it adds one)."""
        raise NotImplementedError

    def check_range(self, ids: np.ndarray, start: int, stop: int) -> None:
        if not self.first_position <= start < stop <= len(ids) - 1:
            raise QuantfidError(
                f"{self.name} server: positions {start}..{stop - 1} of a {len(ids)}-token "
                f"sequence cannot be scored (it returns positions {self.first_position}.."
                f"{len(ids) - 2}, each predicting the next token)")


def build_rows(tops: list[list[tuple[int, float]]], target_lp: list[float],
               chosen: list[list[tuple[int, float]]] | None, k: int) -> TopKRows:
    """Padded TopKRows from per-position lists (ids -1 / log-probs -inf as padding)."""
    n = len(tops)
    width = max([k, *[len(t) for t in tops]]) if n else k
    ids = np.full((n, width), -1, np.int64)
    lp = np.full((n, width), -np.inf)
    for i, top in enumerate(tops):
        if top:
            ids[i, :len(top)] = [a for a, _ in top]
            lp[i, :len(top)] = [b for _, b in top]
    c_ids = c_lp = None
    if chosen is not None:
        m = max([1, *[len(c) for c in chosen]])
        c_ids = np.full((n, m), -1, np.int64)
        c_lp = np.full((n, m), np.nan)
        for i, ch in enumerate(chosen):
            if ch:
                c_ids[i, :len(ch)] = [a for a, _ in ch]
                c_lp[i, :len(ch)] = [b for _, b in ch]
    return TopKRows(ids, lp, np.asarray(target_lp, np.float64), c_ids, c_lp)


def as_float(x: Any, what: str, pos: int | None) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise malformed(what, f"expected a log-prob, got {x!r}"[:200], pos)
    return float(x)


def as_int(x: Any, what: str, pos: int | None) -> int:
    if isinstance(x, bool):
        raise malformed(what, f"expected a token id, got {x!r}", pos)
    try:
        return int(x)
    except (TypeError, ValueError):
        raise malformed(what, f"expected a token id, got {x!r}"[:200], pos) from None


def first_model(answer: Any, what: str) -> str:
    """``data[0].id`` of an OpenAI-style /v1/models answer."""
    try:
        return str(answer["data"][0]["id"])
    except (KeyError, IndexError, TypeError):
        raise malformed(what, "no model listed under data[0].id") from None


def choice(answer: Any, what: str) -> dict[str, Any]:
    """``choices[0]`` of an OpenAI-style completions answer."""
    try:
        c = answer["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise malformed(what, "no choices[0] in the answer") from None
    if not isinstance(c, dict):
        raise malformed(what, "choices[0] is not an object")
    return c


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` before the first occurrence of any stop sequence."""
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


def completions_generate(s: Session, prompt: str, max_tokens: int, stop: Sequence[str],
                         what: str) -> str:
    """Greedy text through OpenAI-style ``/v1/completions`` (vLLM, llama-cpp-python's server;
    ``max_tokens`` at least 1: 0 means unlimited to llama-cpp-python)."""
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": max(1, int(max_tokens)),
                            "temperature": 0.0, "stop": list(stop)}
    if s.model:
        body["model"] = s.model
    text = choice(s.client.post("/v1/completions", body, what), what).get("text")
    if not isinstance(text, str):
        raise malformed(what, "choices[0].text is not a string")
    return text
