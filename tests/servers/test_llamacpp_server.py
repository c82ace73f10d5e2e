"""llama-cpp-python's real server on the embedded GGUF against the same model in-process:
the realigned echo log-probs, loglikelihood, generation, the tokenizer round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.servers.helpers import RowsReducer, log_softmax

from quantfid.backends.base import LoglikRequest
from quantfid.backends.http import open_http
from quantfid.backends.http.backend import HttpBackend
from quantfid.backends.http.vocab import LocalVocab
from quantfid.errors import QuantfidError
from quantfid.models import parse_spec

pytestmark = pytest.mark.slow
K = 20


@pytest.fixture(scope="session")
def served(llama_server: str, gguf: Path) -> HttpBackend:
    return open_http(parse_spec(llama_server, tokenizer=str(gguf), top_k=K, concurrency=1))


def inproc_logprobs(inproc: Any, ids: np.ndarray) -> np.ndarray:
    inproc.reset()
    inproc.eval([int(i) for i in ids])
    return log_softmax(np.array(inproc.scores[:len(ids)], dtype=np.float32))


def test_open_detects_and_identifies(served: HttpBackend, gguf: Path) -> None:
    assert served.dialect.name == "llamacpp"
    assert served.info.extra["served_model"] == str(gguf)
    assert served.identity().to_json() == {"backend": "http", "dtype": "native",
                                           "device": "remote", "numerics": "llamacpp-top20"}
    assert served.tokenizer_id() == LocalVocab(str(gguf)).tokenizer_id()
    assert served.bos_id() is None  # SmolLM2's GGUF adds no BOS
    assert served.vocab_size() == 49152


def test_echo_logprobs_are_realigned(served: HttpBackend, inproc: Any,
                                     window_ids: np.ndarray) -> None:
    """Row i is the distribution at position start + i: every returned id's log-prob, the
    next token's (when among the top K) and the echoed token's match llama.cpp in-process."""
    ids = window_ids[:1, :48]
    (_w, (pos0, rows)), = list(served.score_windows(ids, 24, 47, RowsReducer()))
    lp = inproc_logprobs(inproc, ids[0])
    n_target = 0
    for i in range(len(rows)):
        p = pos0 + i
        ok = rows.ids[i] >= 0
        known = ok & ~np.isnan(rows.logp[i])
        np.testing.assert_allclose(rows.logp[i][known], lp[p, rows.ids[i][known]], atol=2e-5)
        top = set(np.argsort(-lp[p])[:K].tolist())
        assert top <= set(rows.ids[i][ok].tolist())  # shared keys bring their whole group
        assert set(rows.ids[i][known].tolist()) <= top
        t = int(ids[0, p + 1])
        if np.isnan(rows.target_logp[i]):
            assert t not in set(rows.ids[i][known].tolist())
        else:
            n_target += 1
            assert rows.target_logp[i] == pytest.approx(lp[p, t], abs=2e-5)
        assert rows.chosen_ids is not None and rows.chosen_logp is not None
        assert rows.chosen_ids[i, 0] == ids[0, p]  # the echoed token, under position p
        assert rows.chosen_logp[i, 0] == pytest.approx(lp[p, ids[0, p]], abs=2e-5)
    assert n_target > len(rows) // 2


def test_loglikelihood_and_generate(served: HttpBackend, inproc: Any,
                                    window_ids: np.ndarray) -> None:
    row = window_ids[1]
    reqs = [LoglikRequest("a", row[:12], (row[12:14], row[12:13]))]
    (_i, res), = list(served.loglikelihood(reqs))
    for c, cont in enumerate(reqs[0].continuations):
        seq = np.concatenate([reqs[0].context, cont])
        lp = inproc_logprobs(inproc, seq)
        pos = np.arange(11, len(seq) - 1)
        assert res.loglik[c] == pytest.approx(float(lp[pos, seq[pos + 1]].sum()), abs=1e-4)
        assert res.is_greedy[c] == bool(np.all(lp[pos].argmax(axis=1) == seq[pos + 1]))
    # a continuation the model finds implausible: outside the echo's top 1000 (no BOS), read
    # by one more request over the whole vocabulary, exact all the same
    zyg = served.tokenize(" zygote")[0]
    (_i, res), = list(served.loglikelihood([LoglikRequest("b", row[:12], (np.asarray([zyg]),))]))
    lp = inproc_logprobs(inproc, np.concatenate([row[:12], [zyg]]))
    assert np.argsort(-lp[11])[:1000].tolist().count(zyg) == 0  # really outside the top 1000
    assert res.loglik[0] == pytest.approx(float(lp[11, zyg]), abs=1e-4)
    prompt = served.detokenize(row[:16])
    (_j, text), = list(served.generate([prompt], max_tokens=6, stop=["\n"]))
    inproc.reset()
    want = inproc.create_completion(prompt, max_tokens=6, temperature=0.0, stop=["\n"])
    assert text == want["choices"][0]["text"]


def test_a_window_that_does_not_round_trip_is_refused(served: HttpBackend) -> None:
    vocab = served.vocab
    assert vocab is not None
    the = vocab.tokenize(" the")
    split = vocab.tokenize(" t") + vocab.tokenize("he")  # " the" cut in two tokens
    assert len(the) == 1 and len(split) == 2
    ids = np.asarray([vocab.tokenize("Look at")[:2] + split + vocab.tokenize(" end")], np.int64)
    with pytest.raises(QuantfidError, match=r"window 0.*tokenizes the text.*differently from "
                       r"position 2.*use vLLM or SGLang"):
        list(served.score_windows(ids, 1, ids.shape[1] - 1, RowsReducer()))


def test_position_zero_is_refused(served: HttpBackend, window_ids: np.ndarray) -> None:
    with pytest.raises(QuantfidError, match=r"returns positions 1\.\."):
        list(served.score_windows(window_ids[:1, :20], 0, 19, RowsReducer()))
