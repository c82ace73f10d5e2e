"""Fidelity from top-k on real logits: the embedded GGUF (reference) and a Q4_0 requant of
it, both run by llama.cpp in-process; exact KLD from the full distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.servers.conftest import N_CTX, THREADS, llama_cpp
from tests.servers.helpers import log_softmax

from quantfid.backends.base import TopKRows
from quantfid.metrics import token_metrics
from quantfid.metrics.topk import naive_topk_kld, topk_fidelity
from quantfid.store.compact import compact_rows

pytestmark = pytest.mark.slow
START, STOP = 48, 95


def logprobs(llm: Any, windows: np.ndarray) -> np.ndarray:
    out = []
    for row in windows:
        llm.reset()
        llm.eval([int(i) for i in row])
        out.append(log_softmax(np.array(llm.scores[START:STOP], dtype=np.float32)))
    return np.concatenate(out)


def test_bounds_hold_and_the_estimate_beats_the_naive_one(inproc: Any, q4_0_gguf: Path,
                                                           window_ids: np.ndarray) -> None:
    quant = llama_cpp.Llama(model_path=str(q4_0_gguf), n_ctx=N_CTX, n_batch=N_CTX,
                            n_ubatch=N_CTX, logits_all=True, flash_attn=True,
                            n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    lp, lq = logprobs(inproc, window_ids), logprobs(quant, window_ids)
    t = window_ids[:, START + 1:STOP + 1].reshape(-1)
    exact = token_metrics(lp, lq, t, extras=False).kld
    n = len(t)
    rows = compact_rows(lp, t, tail_samples=32, rng=np.random.default_rng(0))
    for k in (5, 20, 64, 256, 1024):
        part = np.argpartition(-lq, k - 1, axis=1)[:, :k]
        q = TopKRows(part, np.take_along_axis(lq, part, axis=1), lq[np.arange(n), t])
        res = topk_fidelity(rows, q, t)
        assert np.all(res.kld_bound_low <= exact * (1 + 1e-9) + 1e-12), k
        assert np.all(exact <= res.kld_bound_high), k
        err = abs(res.metrics.kld.mean() / exact.mean() - 1)
        part_p = np.argpartition(-lp, k - 1, axis=1)[:, :k]
        naive = naive_topk_kld(TopKRows(part_p, np.take_along_axis(lp, part_p, axis=1),
                                        lp[np.arange(n), t]), q, lp.shape[1])
        assert err < abs(naive.mean() / exact.mean() - 1), k
        assert err < (0.1 if k >= 20 else 0.2), (k, err)
