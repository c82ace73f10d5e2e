"""Analysis results for the report tests: the analysis's synthetic cohorts, really analysed,
and the tiny study's real workspace (with a noise floor and numerics added to a copy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.fixtures.tiny_study import copy_workspace

from quantfid.analysis import run_all
from quantfid.analysis.synthetic import make_cohort
from quantfid.store.workspace import Workspace

NOISE_METHOD = "bf16 rounding after every layer"


def analysed(tmp_path_factory: pytest.TempPathFactory, kind: str) -> dict[str, Any]:
    ws = Workspace(tmp_path_factory.mktemp(kind))
    make_cohort(np.random.default_rng(3), kind=kind, n_quants=16, n_prompts=800,  # type: ignore[arg-type]
                corpora=(("prose", 512), ("code", 512)), kld_range=(1e-3, 1.0)).write(ws)
    return run_all(ws, n_boot=200, rng=np.random.default_rng(1)).to_json()


@pytest.fixture(scope="session")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Displacement is not direction: flip volume grows with KLD, direction a coin toss."""
    return analysed(tmp_path_factory, "volume")


def add_noise_floor_and_numerics(ws: Workspace) -> None:
    """A noise-floor row per corpus x ctx (twice the best quant's figures, so it is within the
    floor and the others above), and the backend/numerics the pipeline records per model."""
    fid = ws.rows("fidelity")
    best = min(fid, key=lambda r: r["kld_mean"])
    for r in fid:
        if r["model"] != best["model"]:
            continue
        row = dict(r)
        row.update({"model": "noise:bf16", "method": NOISE_METHOD,
                    "kld_mean": 2 * r["kld_mean"], "kld_mean_ci_low": 1.5 * r["kld_mean"],
                    "kld_mean_ci_high": 2.5 * r["kld_mean"]})
        ws.write_part("noise_floor", f"noise@{r['corpus']}:{r['ctx']}", [row], "test-floor")
    with ws.update() as m:
        for mid, rec in m["models"].items():
            numerics = {"Q8_0": "ggml-cpu", "Q4_0": "weights"}.get(mid, "f32")
            rec.setdefault("extra", {}).update({"backend": "hf", "numerics": numerics,
                                                "dtype": "float32", "device": "cpu"})


@pytest.fixture(scope="session")
def tiny_ws(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(copy_workspace(tiny_study, tmp_path_factory.mktemp("tiny-report") / "ws"))
    add_noise_floor_and_numerics(ws)
    return ws


@pytest.fixture(scope="session")
def tiny_analysis(tiny_ws: Workspace) -> dict[str, Any]:
    """``run_all`` on the tiny study's real workspace (2 recipes, one task x 8 prompts)."""
    return run_all(tiny_ws, n_boot=200, rng=np.random.default_rng(0)).to_json()


def provenance(ws: Workspace, *, embedded_ref: bool | None = None) -> dict[str, Any]:
    """The workspace's provenance; ``embedded_ref`` forces the reference id (a bare workspace)."""
    from quantfid import embedded
    from quantfid.report.provenance import from_workspace

    p = from_workspace(ws, seeds={"analysis": 1}, timings={"measure": 1.5})
    if embedded_ref is not None:
        p["reference"] = embedded.MODEL_ID if embedded_ref else "my-ref"
    return p


@pytest.fixture(scope="session")
def volume_report(analysis: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The synthetic volume cohort's report (embedded reference), written once."""
    from quantfid.report.build import write_report

    d = tmp_path_factory.mktemp("volume-report")
    return write_report(d / "out", analysis, provenance(Workspace(d / "ws"), embedded_ref=True))


@pytest.fixture(scope="session")
def tiny_report(tiny_analysis: dict[str, Any], tiny_ws: Workspace,
                tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny study's report, written once."""
    from quantfid.report.build import write_report

    return write_report(tmp_path_factory.mktemp("tiny-report-out"), tiny_analysis,
                        provenance(tiny_ws))
