"""The llama.cpp backend on the protocol: scoring equals llama-cpp-python's own evaluation,
log-likelihood with prefix reuse equals a naive full evaluation, generation equals
llama-cpp-python's own greedy decoding, and the registry opens it from a model spec."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from quantfid.backends import llamacpp
from quantfid.backends.base import LoglikRequest, TopKRows
from quantfid.errors import QuantfidError
from quantfid.reducers import full_logprobs

needs_llamacpp = pytest.mark.skipif(not llamacpp.available(),
                                    reason="llama-cpp-python is not installed")
TEXT = ("The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins "
        "with a single step. Knowledge is power, and time is money. ") * 10


def test_missing_package_gives_build_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(QuantfidError, match="GGML_NATIVE=OFF"):
        llamacpp.LlamaCppBackend("x.gguf", n_ctx=64)


@pytest.fixture(scope="module")
def lc() -> Iterator[llamacpp.LlamaCppBackend]:
    from quantfid import embedded

    be = llamacpp.LlamaCppBackend(embedded.gguf_path(), n_ctx=160, threads=1)
    yield be
    be.close()


class _Keep:
    """Reducer keeping (window, pos0, float64 copy of the logits)."""

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> tuple[int, int, np.ndarray]:
        return window, pos0, logits.double().numpy().copy()

    def topk(self, window: int, pos0: int, rows: TopKRows) -> Any:
        raise AssertionError("a local backend hands full logits")

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        return None


@pytest.mark.slow
@needs_llamacpp
def test_identity_tokens_and_score_windows_equal_raw_llama(lc: llamacpp.LlamaCppBackend) -> None:
    assert lc.identity().to_json() == {"backend": "llamacpp", "dtype": "native", "device": "cpu",
                                       "numerics": "native"}
    assert lc.capabilities == {"score", "loglikelihood", "generate"}
    ids = lc.tokenize(TEXT)[:2 * 128].reshape(2, 128)
    assert lc.detokenize(ids[0])[:20] == TEXT[:20]
    monkey = llamacpp.CHUNK
    try:
        llamacpp.CHUNK = 40                   # several chunks per window
        got = list(lc.score_windows(ids, 64, 127, _Keep()))
    finally:
        llamacpp.CHUNK = monkey
    assert [(w, r[1]) for w, r in got] == [(0, 64), (0, 104), (1, 64), (1, 104)]
    # independently: llama-cpp-python's own eval of each window from an empty cache
    llm = lc.llm
    for w in range(2):
        llm.reset()
        llm.eval([int(t) for t in ids[w]])
        expect = np.asarray(llm.scores[64:127], dtype=np.float64)
        mine = np.concatenate([r[2] for ww, r in got if ww == w])
        np.testing.assert_array_equal(mine, expect)
    with pytest.raises(QuantfidError, match="outside"):
        next(lc.score_windows(ids, 100, 200, _Keep()))


@pytest.mark.slow
@needs_llamacpp
def test_loglikelihood_prefix_reuse_equals_naive(lc: llamacpp.LlamaCppBackend) -> None:
    toks = lc.tokenize(TEXT)
    reqs = [LoglikRequest("a", toks[:30], (toks[30:33], toks[30:31], toks[50:58]), gold=2),
            LoglikRequest("b", toks[5:60], (toks[60:64], toks[10:12]), gold=0)]
    out = dict(lc.loglikelihood(reqs, _Keep()))
    assert sorted(out) == [0, 1]
    llm = lc.llm
    for i, req in enumerate(reqs):
        for c, cont in enumerate(req.continuations):
            seq = np.concatenate([req.context, cont])
            llm.reset()
            llm.eval([int(t) for t in seq])
            lsm = torch.log_softmax(torch.from_numpy(np.array(llm.scores[:len(seq) - 1])), -1)
            tail = lsm[len(req.context) - 1:]                      # predicts the continuation
            lp = tail.gather(-1, torch.from_numpy(cont)[:, None])[:, 0]
            assert out[i].loglik[c] == pytest.approx(float(lp.double().sum()), abs=2e-3)
            assert out[i].is_greedy[c] == bool((tail.argmax(-1) == torch.from_numpy(cont)).all())
            if c == req.gold:
                (w, pos0, gold), = out[i].reduced
                assert (w, pos0) == (i, 0) and gold.shape[0] == len(seq) - 1
                full = np.asarray(llm.scores[:len(seq) - 1], dtype=np.float64)
                np.testing.assert_allclose(gold, full, atol=2e-2)
    # a continuation of the greedy token is greedy
    llm.reset()
    llm.eval([int(t) for t in toks[:30]])
    best = int(np.argmax(llm.scores[29]))
    (_, res), = lc.loglikelihood([LoglikRequest("g", toks[:30], (np.array([best]),))])
    assert res.is_greedy[0] and not res.reduced
    with pytest.raises(QuantfidError, match="does not fit"):
        list(lc.loglikelihood([LoglikRequest("long", toks[:150], (toks[:20],))]))


@pytest.mark.slow
@needs_llamacpp
def test_generate_equals_llama_cpp_greedy(lc: llamacpp.LlamaCppBackend) -> None:
    prompts = ["def fibonacci(n):\n", "The capital of France is"]
    got = dict(lc.generate(prompts, max_tokens=24, stop=()))
    for i, p in enumerate(prompts):
        ref = lc.llm.create_completion(p, max_tokens=24, temperature=0.0, top_k=1)
        assert got[i] == ref["choices"][0]["text"], (got[i], ref)
    # a stop sequence cuts before itself
    text = got[0]
    cut = text[5:9]
    (_, stopped), = lc.generate(prompts[:1], max_tokens=24, stop=[cut, "zzzz"])
    assert stopped == text[:text.find(cut)]
    (_, short), = lc.generate(prompts[:1], max_tokens=3, stop=())
    assert text.startswith(short) and len(lc.tokenize(short, bos=False)) <= 3


@pytest.mark.slow
@needs_llamacpp
def test_registry_opens_spec_and_legacy_logprobs() -> None:
    from quantfid.backends.registry import open_backend
    from quantfid.models import parse_spec

    be = open_backend(parse_spec("embedded", backend="llamacpp", name="emb", n_ctx=64))
    try:
        assert be.name == "llamacpp" and be.info.id == "emb" and be.n_ctx == 64  # type: ignore[attr-defined]
        ids = be.tokenize(TEXT)[:64][None, :]
        (lp,) = list(full_logprobs(be, ids, start=32, stop=63))
        assert lp.shape == (1, 31, be.vocab_size())
        assert torch.allclose(lp.exp().sum(-1), torch.ones(1, 31), atol=1e-4)
    finally:
        be.close()


@pytest.mark.slow
@needs_llamacpp
def test_llamacpp_matches_transformers_on_embedded_gguf(lc: llamacpp.LlamaCppBackend) -> None:
    from quantfid import embedded
    from quantfid.backends.hf import HFBackend

    hf = HFBackend.load(str(embedded.gguf_path()))
    assert lc.vocab_size() == hf.vocab_size()
    assert lc.tokenizer_id() == hf.tokenizer_id()
    assert lc.bos_id() == hf.bos_id()
    ids = hf.tokenize(TEXT)[:64][None, :]
    assert np.array_equal(lc.tokenize(TEXT)[:64], ids[0])
    p = next(full_logprobs(hf, ids, start=32, stop=63)).double()
    q = next(full_logprobs(lc, ids, start=32, stop=63)).double()
    kld = (p.exp() * (p - q)).sum(-1)
    # same Q4_1 weights; llama.cpp rounds activations to q8_1 and K/V to f16
    assert float(kld.mean()) < 0.02
    assert float((p.argmax(-1) == q.argmax(-1)).double().mean()) > 0.9
