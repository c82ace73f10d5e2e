"""Shared synthetic workspaces for the analysis tests (built once per session), and a
builder of tiny hand-made workspaces for exact checks (fixture ``hand_ws``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from quantfid.analysis.synthetic import make_cohort
from quantfid.metrics.types import STATS_KEYS
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace


def _ws(root: Path, kind: str, seed: int, **kw: object) -> Workspace:
    ws = Workspace(root / f"{kind}-{seed}")
    make_cohort(np.random.default_rng(seed), kind=kind, **kw).write(ws)  # type: ignore[arg-type]
    return ws


@pytest.fixture(scope="session")
def volume_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return _ws(tmp_path_factory.mktemp("ana"), "volume", 7, n_quants=30, n_prompts=1200)


@pytest.fixture(scope="session")
def direction_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return _ws(tmp_path_factory.mktemp("ana"), "direction", 7, n_quants=30, n_prompts=400)


@pytest.fixture(scope="session")
def small_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return _ws(tmp_path_factory.mktemp("ana"), "volume", 3, n_quants=8, n_prompts=200,
               corpora=(("wiki", 512), ("code", 1024)))


def fidelity_row(model: str, kld: float, corpus: str = "wiki", ctx: int = 512) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(STATS_KEYS)
    row.update({"model": model, "reference": "ref", "corpus": corpus, "corpus_hash": "h",
                "ctx": ctx, "scoring": "all", "n_windows": 4, "kld_mean": kld,
                "ppl_ratio": 1.0 + kld, "same_top1": 1.0 - kld,
                "kld_mean_ci_low": kld * 0.9, "kld_mean_ci_high": kld * 1.1,
                "ln_ppl_ratio_ci_low": None, "ln_ppl_ratio_ci_high": None})
    return row


def _hand_ws(path: Path, outcomes: dict[str, dict[str, list[int]]],
            klds: dict[str, float], prompt_kld: dict[str, dict[str, list[float]]] | None = None) -> Workspace:
    """``outcomes[model][bench]`` = 0/1 per prompt; model "ref" is the reference."""
    ws = Workspace(path)
    ws.add_model(Model("ref", role="reference"))
    for m in outcomes:
        if m != "ref":
            ws.add_model(Model(m, role="quant", bits_per_weight=4.0, bytes=1000))
    for m, kld in klds.items():
        ws.write_part("fidelity", f"{m}@wiki", [fidelity_row(m, kld)])
    for m, by_b in outcomes.items():
        ws.add_outcomes(m, [Outcome(m, b, f"p{i}", bool(v)) for b, vs in by_b.items()
                            for i, v in enumerate(vs)])
    for m, kl_b in (prompt_kld or {}).items():
        ws.add_prompt_fidelity(m, [PromptFidelity(m, b, f"p{i}", 10, float(k), float(k), 10 * float(k))
                                   for b, ks in kl_b.items() for i, k in enumerate(ks)])
    return ws


@pytest.fixture
def hand_ws() -> Callable[..., Workspace]:
    return _hand_ws
