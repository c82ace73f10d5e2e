"""The embedded default model on a handful of prompts (slow: loads the model)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.bench.encode import encode_prompt
from quantfid.bench.run import run_task
from quantfid.bench.score import score_naive, score_prompts
from quantfid.bench.tasks import DEFAULT_TASKS, load_prompts
from quantfid.records import Model
from quantfid.store.workspace import Workspace


@pytest.mark.slow
def test_embedded_shared_scoring_and_workspace(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    lm = load_hf("embedded", role="reference")
    enc = [encode_prompt(lm.tokenizer, p) for t in DEFAULT_TASKS for p in load_prompts(t, limit=2)]
    shared = score_prompts(lm.module, enc, lm.device, batch_size=3, want_gold_logprobs=True)
    naive = score_naive(lm.module, enc, lm.device, want_gold_logprobs=True)
    for a, b in zip(shared, naive, strict=True):
        np.testing.assert_allclose(a.loglik, b.loglik, atol=1e-4, rtol=0)
        assert a.gold_logprobs is not None and b.gold_logprobs is not None
        torch.testing.assert_close(a.gold_logprobs, b.gold_logprobs, atol=2e-4, rtol=0)

    ws = Workspace(tmp_path / "ws")
    ref = run_task(ws, lm, "cloze", limit=3, progress=False)
    twin = dataclasses.replace(lm, module=copy.deepcopy(lm.module),
                               info=Model(id="twin", role="quant", hash="twin"))
    q = run_task(ws, twin, "cloze", limit=3, progress=False)
    assert ref.n == q.n == 3 and ref.acc == q.acc and ref.acc_norm == q.acc_norm
    assert q.kld_mean is not None and q.kld_mean < 1e-5
    assert len(ws.outcomes()) == 12 and len(ws.prompt_fidelity()) == 3
