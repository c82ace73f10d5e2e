"""The embedded default model through the benchmark path (slow: loads the model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.backends.base import LoglikRequest
from quantfid.bench.encode import encode_prompt
from quantfid.bench.run import run_tasks
from quantfid.bench.tasks import DEFAULT_TASKS, load_prompts
from quantfid.reducers import FullRows
from quantfid.store.workspace import Workspace


@pytest.mark.slow
def test_embedded_shared_scoring_and_workspace(tmp_path: Path) -> None:
    from quantfid.backends.hf import HFBackend

    b = HFBackend.load("embedded", role="reference")
    enc = [encode_prompt(b.tokenizer, p) for t in DEFAULT_TASKS for p in load_prompts(t, limit=2)]
    reqs = [LoglikRequest(e.id, e.context, e.continuations, e.gold) for e in enc]
    shared = dict(b.loglikelihood(reqs, FullRows(), batch_size=3))
    for i, e in enumerate(enc):  # one full forward per choice, no prefix sharing
        for c, cont in enumerate(e.continuations):
            full = torch.from_numpy(np.concatenate([e.context, cont]))
            with torch.no_grad():
                lsm = torch.log_softmax(b.module(input_ids=full[None, :-1]).logits[0].double(), -1)
            want = lsm[-len(cont):].gather(-1, torch.from_numpy(cont)[:, None]).sum()
            assert shared[i].loglik[c] == pytest.approx(float(want), rel=1e-5, abs=2e-4)
            if c == e.gold:
                got = torch.cat(shared[i].reduced).double()
                torch.testing.assert_close(got, lsm, atol=2e-4, rtol=0)

    ws = tmp_path / "ws"
    ref = run_tasks(ws, "embedded", reference=True, tasks="cloze", limit=3, progress=False)
    q = run_tasks(ws, "embedded", name="twin", numerics="weights", tasks="cloze", limit=3,
                  progress=False)
    assert ref[0]["n"] == q[0]["n"] == 3 and ref[0]["acc"] == q[0]["acc"]
    assert q[0]["kld_mean"] is not None and q[0]["kld_mean"] < 1e-5
    w = Workspace(ws)
    assert len(w.outcomes()) == 12 and len(w.prompt_fidelity()) == 3
