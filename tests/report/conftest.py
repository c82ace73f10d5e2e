"""Analysis results for the report tests: the analysis's synthetic cohorts, really analysed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from quantfid.analysis import run_all
from quantfid.analysis.synthetic import make_cohort
from quantfid.store.workspace import Workspace


def analysed(tmp_path_factory: pytest.TempPathFactory, kind: str) -> dict[str, Any]:
    ws = Workspace(tmp_path_factory.mktemp(kind))
    make_cohort(np.random.default_rng(3), kind=kind, n_quants=16, n_prompts=800,  # type: ignore[arg-type]
                corpora=(("prose", 512), ("code", 512)), kld_range=(1e-3, 1.0)).write(ws)
    return run_all(ws, n_boot=200, rng=np.random.default_rng(1)).to_json()


@pytest.fixture(scope="session")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Displacement is not direction: flip volume grows with KLD, direction a coin toss."""
    return analysed(tmp_path_factory, "volume")
