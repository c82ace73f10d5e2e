"""The ids path over real HTTP: the in-repo vLLM and SGLang servers answer with real
log-probs of the embedded model (llama-cpp-python in-process), the backend parses them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from tests.servers.helpers import FidelityReducer, RowsReducer, log_softmax
from tests.servers.mock import (
    Model,
    serve,
    sglang_corrupt,
    sglang_routes,
    vllm_corrupt,
    vllm_routes,
)

from quantfid.backends.base import LoglikRequest
from quantfid.backends.http import open_http
from quantfid.errors import QuantfidError
from quantfid.metrics import token_metrics
from quantfid.metrics.topk import TopKFidelity, mean_kld
from quantfid.models import parse_spec
from quantfid.store.compact import compact_rows
from quantfid.store.rows import CompactRows

pytestmark = pytest.mark.slow
START, STOP = 48, 95


class Perturbed(Model):
    """The same model with a fixed perturbation of its logits: a stand-in quant."""

    def __init__(self, base: Model, scale: float = 0.3) -> None:
        super().__init__(base.llm)
        self.lock = base.lock
        v = base.llm.n_vocab()
        rng = np.random.default_rng(0)
        self.a, self.b = rng.normal(size=v) * scale, rng.normal(size=v) * scale

    def logits(self, ids: list[int]) -> np.ndarray:
        with self.lock:
            self.llm.reset()
            self.llm.eval(ids)
            x = np.array(self.llm.scores[:len(ids)], dtype=np.float64)
        odd = (np.arange(len(ids)) % 2 == 1)[:, None]
        return x + np.where(odd, self.a[None, :], self.b[None, :])

    def logprobs(self, ids: list[int]) -> np.ndarray:
        return log_softmax(self.logits(ids)).astype(np.float32)


@pytest.fixture(scope="module")
def quant(model: Model) -> Perturbed:
    return Perturbed(model)


@pytest.fixture
def vllm(model: Model) -> Iterator[tuple[str, Any]]:
    with serve(vllm_routes(model, "smollm2", 64), vllm_corrupt) as out:
        yield out


def reference_rows(model: Model, windows: np.ndarray) -> dict[int, CompactRows]:
    """The reference's compact rows (float64, the store's own selection and tail sampler)."""
    out = {}
    for w, row in enumerate(windows):
        lp = log_softmax(model.logprobs(row.tolist())[START:STOP])
        t = row[START + 1:STOP + 1]
        out[w] = compact_rows(lp, t, tail_samples=8, rng=np.random.default_rng(w))
    return out


def test_vllm_rows_are_the_models(vllm: tuple[str, Any], model: Model,
                                  window_ids: np.ndarray) -> None:
    url, _ = vllm
    be = open_http(parse_spec(url, tokenizer="embedded", top_k=20))
    assert be.dialect.name == "vllm" and be.info.extra["served_model"] == "smollm2"
    assert be.identity().numerics == "vllm-top20"
    out = list(be.score_windows(window_ids, START, STOP, RowsReducer()))
    assert [w for w, _ in out] == [0, 1]
    for w, (pos0, rows) in out:
        lp = model.logprobs(window_ids[w].tolist())
        assert pos0 == START and len(rows) == STOP - START
        for i in range(len(rows)):
            p = START + i
            assert set(rows.ids[i].tolist()) == set(np.argsort(-lp[p])[:20].tolist())
            np.testing.assert_allclose(rows.logp[i], lp[p, rows.ids[i]], rtol=1e-6)
            assert rows.target_logp[i] == pytest.approx(lp[p, window_ids[w, p + 1]], rel=1e-6)
    be.close()


def test_vllm_fidelity_bounds_hold(vllm: tuple[str, Any], model: Model, quant: Perturbed,
                                   window_ids: np.ndarray) -> None:
    """Quant behind the server, reference rows here: exact KLD within the bounds, and the
    estimate close at K = 64 (the mock's --max-logprobs)."""
    _url, _ = vllm
    with serve(vllm_routes(quant, "quant", 64), vllm_corrupt) as (qurl, _):
        be = open_http(parse_spec(qurl, tokenizer="embedded", top_k=64, concurrency=2))
        ref = reference_rows(model, window_ids)
        red = FidelityReducer(ref, window_ids, START)
        res: list[TopKFidelity] = [r for _, r in be.score_windows(window_ids, START, STOP, red)]
    for w, r in enumerate(res):
        row = window_ids[w].tolist()
        exact = token_metrics(log_softmax(model.logprobs(row)[START:STOP]),
                              quant.logprobs(row)[START:STOP].astype(np.float64),
                              window_ids[w, START + 1:STOP + 1]).kld
        assert np.all(r.kld_bound_low <= exact + 1e-6)
        m = mean_kld(r)
        assert m.low <= exact.mean() and abs(m.estimate / exact.mean() - 1) < 0.1


def test_vllm_cap_and_key(vllm: tuple[str, Any], monkeypatch: pytest.MonkeyPatch,
                          window_ids: np.ndarray) -> None:
    url, faults = vllm
    be = open_http(parse_spec(url, tokenizer="embedded", top_k=100))
    with pytest.raises(QuantfidError, match="--max-logprobs 100"):
        list(be.score_windows(window_ids[:1], START, STOP, RowsReducer()))
    monkeypatch.delenv("QF_TEST_KEY", raising=False)
    with pytest.raises(QuantfidError, match="QF_TEST_KEY is not set"):
        open_http(parse_spec(url, api_key_env="QF_TEST_KEY"))
    monkeypatch.setenv("QF_TEST_KEY", "k-123")
    open_http(parse_spec(url, api_key_env="QF_TEST_KEY", tokenizer="embedded"))
    assert faults.seen[-1].endswith("Bearer k-123")


def test_another_model_behind_the_url_is_another_model(model: Model, quant: Perturbed) -> None:
    hashes = []
    for m in (model, model, quant):
        with serve(vllm_routes(m, "same-name", 20), vllm_corrupt) as (url, _):
            hashes.append(open_http(parse_spec(url)).info.hash)
    assert hashes[0] == hashes[1] != hashes[2]


def test_vllm_loglikelihood_and_generate(vllm: tuple[str, Any], model: Model,
                                         window_ids: np.ndarray) -> None:
    url, _ = vllm
    be = open_http(parse_spec(url, tokenizer="embedded"))
    row = window_ids[0]
    reqs = [LoglikRequest("a", row[:10], (row[10:13], row[20:22]), gold=0),
            LoglikRequest("b", row[30:41], (row[41:42],))]
    red = RowsReducer()
    got = dict(be.loglikelihood(reqs, red))
    for i, req in enumerate(reqs):
        for c, cont in enumerate(req.continuations):
            seq = np.concatenate([req.context, cont])
            lp = model.logprobs(seq.tolist())
            pos = np.arange(len(req.context) - 1, len(seq) - 1)
            assert got[i].loglik[c] == pytest.approx(float(lp[pos, seq[pos + 1]].sum()), rel=1e-6)
            assert got[i].is_greedy[c] == bool(np.all(lp[pos].argmax(axis=1) == seq[pos + 1]))
    assert len(got[0].reduced) == 1 and got[0].reduced[0][0] == 0  # gold rows from position 0
    assert got[1].reduced == []
    prompt = be.detokenize(row[:20])
    (i, text), = be.generate([prompt], max_tokens=8, stop=["\n"])
    assert text == model.complete(prompt, 8, ["\n"]).split("\n")[0]


@pytest.fixture
def sglang(model: Model) -> Iterator[tuple[str, Any]]:
    with serve(sglang_routes(model, "/models/smollm2"), sglang_corrupt) as out:
        yield out


def test_sglang_rows_are_the_models(sglang: tuple[str, Any], model: Model,
                                    window_ids: np.ndarray) -> None:
    url, _ = sglang
    be = open_http(parse_spec(url, tokenizer="embedded", top_k=10))
    assert be.dialect.name == "sglang"
    (_w, (pos0, rows)), = list(be.score_windows(window_ids[:1], START, STOP,
                                               RowsReducer(None)))
    lp = model.logprobs(window_ids[0].tolist())
    assert pos0 == START and len(rows) == STOP - START  # no chosen ids: one request
    for i in range(len(rows)):
        p = START + i
        np.testing.assert_array_equal(np.sort(rows.ids[i]), np.sort(np.argsort(-lp[p])[:10]))
        assert rows.target_logp[i] == pytest.approx(lp[p, window_ids[0, p + 1]], rel=1e-6)


def test_sglang_chosen_ids_give_the_compact_store_estimate(
        sglang: tuple[str, Any], model: Model, quant: Perturbed, window_ids: np.ndarray) -> None:
    """Asking for the reference's kept ids and tail samples: every q is known, so the
    result is the compact store's own estimate (kept ids exact, sampled tail), at K = 5."""
    with serve(sglang_routes(quant, "/models/quant"), sglang_corrupt) as (qurl, _):
        be = open_http(parse_spec(qurl, tokenizer="embedded", top_k=5, chosen_chunk=16))
        ref = reference_rows(model, window_ids[:1])
        res = [r for _, r in be.score_windows(window_ids[:1], START, STOP,
                                              FidelityReducer(ref, window_ids, START))]
    assert len(res) == 3  # 47 positions in chunks of 16
    kld = np.concatenate([r.metrics.kld for r in res])
    row = window_ids[0].tolist()
    rows, q = ref[0], quant.logprobs(row)[START:STOP].astype(np.float64)
    # the compact store's estimate: kept ids exact, tail bucket + sampled tail divergence
    want = np.empty(len(rows))
    for i in range(len(rows)):
        r = rows.slice(i, i + 1)
        lq = q[i]
        kept = r.ids
        kl = float(np.sum(np.exp(r.logp) * (r.logp - lq[kept])))
        mask = np.ones(len(lq), bool)
        mask[kept] = False
        q_t, p_t = np.exp(lq[mask]).sum(), np.exp(r.log_tail[0])
        ln_r = (lq[r.tail_ids] - np.log(q_t)) - (r.tail_logp - np.log(p_t))
        want[i] = kl + p_t * np.log(p_t / q_t) + p_t * np.mean(np.expm1(ln_r) - ln_r)
    np.testing.assert_allclose(kld, want, rtol=1e-5, atol=1e-9)


def test_malformed_answers_name_the_position(sglang: tuple[str, Any], vllm: tuple[str, Any],
                                             window_ids: np.ndarray) -> None:
    for (url, faults), pat in ((sglang, "window 0, positions 48..94, position 50"),
                               (vllm, "window 0, positions 48..94, position 50")):
        be = open_http(parse_spec(url, tokenizer="embedded", top_k=5, retries=0))
        faults.corrupt, faults.corrupt_pos = 1, 50
        with pytest.raises(QuantfidError, match=pat):
            list(be.score_windows(window_ids[:1], START, STOP, RowsReducer()))
