"""Analysis results for the report tests: a synthetic workspace through the real analysis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from quantfid.analysis.run import run_all
from quantfid.metrics.types import STATS_KEYS
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace

N_QUANTS = 12
BENCHES = ("bench_a", "bench_b")
N_PROMPTS = 80


def synthetic_workspace(path: Path, seed: int = 0) -> Workspace:
    """A cohort whose outcomes are redrawn at chance with a probability growing with KLD:
    the score falls with KLD over the full cohort, while near baseline the few flips are
    noise (the paper's finding)."""
    rng = np.random.default_rng(seed)
    ws = Workspace(path)
    ws.add_model(Model(id="ref", role="reference", source="test", format="hf"))
    kld = np.geomspace(1e-4, 0.5, N_QUANTS)
    ref_pass = {b: rng.random(N_PROMPTS) < 0.6 for b in BENCHES}
    ws.add_outcomes("ref", [Outcome("ref", b, f"p{j}", bool(ref_pass[b][j]))
                            for b in BENCHES for j in range(N_PROMPTS)])
    for i, k in enumerate(kld):
        name = f"q{i:02d}"
        ws.add_model(Model(id=name, bits_per_weight=8.5 - 0.5 * i, bytes=int(1e8 / (i + 1))))
        rows = []
        for corpus in ("prose", "code"):
            row: dict[str, Any] = {key: None for key in STATS_KEYS}
            kk = float(k * rng.uniform(0.8, 1.25))
            row.update(model=name, reference="ref", corpus=corpus, corpus_hash="h", ctx=512,
                       scoring="llamacpp", n_windows=4, n_tokens=1020, kld_mean=kk,
                       kld_median=kk / 3, kld_p99=kk * 8, ppl_ratio=1 + kk, ln_ppl_ratio=kk,
                       same_top1=1 - kk / 2, kld_mean_ci_low=kk * 0.9, kld_mean_ci_high=kk * 1.1)
            rows.append(row)
        ws.write_part("fidelity", name, rows)
        outs, pfs = [], []
        p_redraw = min(0.95, 2.0 * k)  # a redrawn prompt passes at chance (0.25)
        for b in BENCHES:
            for j in range(N_PROMPTS):
                redraw = rng.random() < p_redraw
                passed = bool(rng.random() < 0.25) if redraw else bool(ref_pass[b][j])
                outs.append(Outcome(name, b, f"p{j}", passed))
                pk = float(k * rng.lognormal(0, 0.5))
                pfs.append(PromptFidelity(name, b, f"p{j}", 40, pk, pk * 5, pk * 40))
        ws.add_outcomes(name, outs)
        ws.add_prompt_fidelity(name, pfs)
    return ws


@pytest.fixture(scope="session")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    ws = synthetic_workspace(tmp_path_factory.mktemp("ws"))
    return run_all(ws, n_boot=200, rng=np.random.default_rng(1)).to_json()
