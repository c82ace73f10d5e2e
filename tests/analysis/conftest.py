"""Shared synthetic workspaces for the analysis tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantfid.analysis.synthetic import make_cohort
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
