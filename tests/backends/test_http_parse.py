"""The dialects' parsers on answers written in each server's documented shape (no network:
a fake client hands back the JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from quantfid.backends.http.client import ServerError
from quantfid.backends.http.detect import detect_dialect
from quantfid.backends.http.dialect import MalformedAnswer, Session, cut_at_stop
from quantfid.backends.http.sglang import SGLang
from quantfid.backends.http.vllm import VLLM
from quantfid.errors import QuantfidError


class FakeClient:
    """Answers each (method, path) with the next canned JSON (or raises a ServerError)."""

    base_url = "http://fake"

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, body: Any, what: str = "") -> Any:
        self.sent.append((method, path, body))
        ans = self.answers.get((method, path))
        if ans is None:
            raise ServerError(f"{method} {path}: 404", 404, "Not Found")
        if isinstance(ans, ServerError):
            raise ans
        return ans

    def get(self, path: str, what: str = "") -> Any:
        return self.request("GET", path, None, what)

    def post(self, path: str, body: Any, what: str = "") -> Any:
        return self.request("POST", path, body, what)


def vllm_answer(ids: list[int]) -> dict[str, Any]:
    """prompt_logprobs as vLLM documents it: null first, then K entries (+ the prompt token
    when it ranks lower) keyed by id strings."""
    entries: list[Any] = [None]
    for j in range(1, len(ids)):
        e = {"7": {"logprob": -0.1, "rank": 1, "decoded_token": "a"},
             "8": {"logprob": -2.5, "rank": 2, "decoded_token": "b"}}
        if str(ids[j]) not in e:
            e[str(ids[j])] = {"logprob": -9.0 - j, "rank": 40 + j, "decoded_token": "z"}
        entries.append(e)
    return {"choices": [{"index": 0, "text": "x", "prompt_logprobs": entries}]}


def test_vllm_prompt_logprobs() -> None:
    ids = np.array([3, 7, 11, 8, 5], np.int64)
    fake = FakeClient({("POST", "/v1/completions"): vllm_answer(ids.tolist())})
    rows = VLLM(Session(fake, "m")).score(ids, 1, 4, 2, None, "window 0")  # type: ignore[arg-type]
    sent = fake.sent[0][2]
    assert sent["prompt"] == [3, 7, 11, 8, 5] and sent["prompt_logprobs"] == 2
    assert sent["max_tokens"] == 1 and sent["model"] == "m"
    # position 1 predicts token 11 (outside the top 2), 2 predicts 8 (rank 2), 3 predicts 5
    np.testing.assert_array_equal(rows.ids, [[7, 8], [7, 8], [7, 8]])
    np.testing.assert_allclose(rows.target_logp, [-11.0, -2.5, -13.0])
    assert rows.chosen_ids is None


def test_vllm_missing_target_names_the_position() -> None:
    ans = vllm_answer([3, 7, 11, 8])
    del ans["choices"][0]["prompt_logprobs"][3]["8"]
    fake = FakeClient({("POST", "/v1/completions"): ans})
    with pytest.raises(MalformedAnswer, match=r"window 2, position 2: .*next token 8"):
        VLLM(Session(fake)).score(np.array([3, 7, 11, 8]), 1, 3, 2, None,  # type: ignore[arg-type]
                                  "window 2")


def test_vllm_wrong_length_and_bad_value() -> None:
    ans = vllm_answer([3, 7, 11])
    fake = FakeClient({("POST", "/v1/completions"): ans})
    with pytest.raises(MalformedAnswer, match="3 entries, expected 5"):
        VLLM(Session(fake)).score(np.array([3, 7, 11, 8, 5]), 1, 4, 2, None,  # type: ignore[arg-type]
                                  "w")
    ans["choices"][0]["prompt_logprobs"][2]["7"]["logprob"] = "x"
    with pytest.raises(MalformedAnswer, match="position 1: expected a log-prob"):
        VLLM(Session(fake)).score(np.array([3, 7, 11]), 1, 2, 2, None, "w")  # type: ignore[arg-type]


def test_vllm_cap_on_logprobs_is_explained() -> None:
    err = ServerError("400", 400, "Requested prompt logprobs of 64, which is greater than max "
                      "allowed: 20")
    fake = FakeClient({("POST", "/v1/completions"): err})
    with pytest.raises(QuantfidError, match="--max-logprobs 64"):
        VLLM(Session(fake)).score(np.array([1, 2, 3]), 0, 2, 64, None, "w")  # type: ignore[arg-type]


def sglang_answer(ids: list[int], start: int, chosen: list[int] | None,
                  own_entry: bool = True) -> dict[str, Any]:
    first = start if own_entry else start + 1
    tok, top, ch = [], [], []
    for j in range(first, len(ids)):
        if j == 0:
            tok.append([None, ids[0], None])
            top.append(None)
            ch.append(None)
            continue
        tok.append([-1.0 * j, ids[j], None])
        top.append([[-0.5, 4, None], [-1.5, 9, None]])
        ch.append([[-3.0 - j, c, None] for c in chosen] if chosen else None)
    meta: dict[str, Any] = {"input_token_logprobs": tok, "input_top_logprobs": top}
    if chosen:
        meta["input_token_ids_logprobs"] = ch
    return {"text": "", "meta_info": meta}


@pytest.mark.parametrize("own_entry", [True, False])
def test_sglang_input_logprobs_either_convention(own_entry: bool) -> None:
    ids = [5, 6, 7, 8, 9]
    fake = FakeClient({("POST", "/generate"): sglang_answer(ids, 2, [30, 31], own_entry)})
    rows = SGLang(Session(fake, "m")).score(np.array(ids), 2, 4, 2, np.array([30, 31]),  # type: ignore[arg-type]
                                            "w")
    body = fake.sent[0][2]
    assert body["input_ids"] == ids and body["logprob_start_len"] == 2
    assert body["top_logprobs_num"] == 2 and body["token_ids_logprob"] == [30, 31]
    np.testing.assert_allclose(rows.target_logp, [-3.0, -4.0])  # tokens 3 and 4
    np.testing.assert_array_equal(rows.ids, [[4, 9], [4, 9]])
    assert rows.chosen_ids is not None and rows.chosen_logp is not None
    np.testing.assert_array_equal(rows.chosen_ids, [[30, 31], [30, 31]])
    np.testing.assert_allclose(rows.chosen_logp, [[-6.0, -6.0], [-7.0, -7.0]])


def test_sglang_misaligned_answer_is_refused() -> None:
    ans = sglang_answer([5, 6, 7, 8], 1, None)
    ans["meta_info"]["input_token_logprobs"][2][1] = 99
    fake = FakeClient({("POST", "/generate"): ans})
    with pytest.raises(MalformedAnswer, match="position 2: entry is for token 99"):
        SGLang(Session(fake)).score(np.array([5, 6, 7, 8]), 1, 3, 2, None, "w")  # type: ignore[arg-type]


def test_detection_from_routes() -> None:
    sgl = FakeClient({("GET", "/get_model_info"): {"model_path": "/m"}})
    assert detect_dialect(sgl) == "sglang"  # type: ignore[arg-type]
    vll = FakeClient({("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "vllm"}]}})
    assert detect_dialect(vll) == "vllm"  # type: ignore[arg-type]
    lcp = FakeClient({("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "me"}]},
                      ("POST", "/extras/tokenize"): {"tokens": [1]}})
    assert detect_dialect(lcp) == "llamacpp"  # type: ignore[arg-type]
    server = FakeClient({("GET", "/v1/models"): {"data": [{"id": "m", "owned_by": "llamacpp"}]},
                         ("GET", "/props"): {"default_generation_settings": {}}})
    with pytest.raises(QuantfidError, match=r"llama-server returns no prompt log-probs.*"
                       r"llama_cpp.server.*vLLM or SGLang"):
        detect_dialect(server)  # type: ignore[arg-type]
    with pytest.raises(QuantfidError, match="set option dialect"):
        detect_dialect(FakeClient({}))  # type: ignore[arg-type]


def test_cut_at_stop() -> None:
    assert cut_at_stop("abc\n\ndef", ["\n\n", "zz"]) == "abc"
    assert cut_at_stop("abc", []) == "abc"
    assert cut_at_stop("a.b;c", [";", "."]) == "a"
