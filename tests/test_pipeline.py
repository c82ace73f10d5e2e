"""One pipeline: ``study``, ``measure`` and ``bench`` run the same units (same parts, hashes and
numbers), changed inputs redo exactly their units, and nothing another command added is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.fixtures.tiny_study import TINY_CONFIG, copy_workspace, write_config

from quantfid import cli

pytestmark = pytest.mark.slow


def _parts(ws: Path) -> dict[str, tuple[str, list[dict]]]:
    """Every table part: ``table/name`` -> (unit hash, rows)."""
    out = {}
    for p in sorted((ws / "tables").glob("*/*.parquet")):
        t = pq.read_table(p)
        h = (t.schema.metadata or {}).get(b"unit_hash", b"").decode()
        out[f"{p.parent.name}/{p.stem}"] = (h, t.replace_schema_metadata(None).to_pylist())
    return out


def _mtimes(ws: Path) -> dict[str, int]:
    return {str(p.relative_to(ws)): p.stat().st_mtime_ns
            for p in ws.rglob("*") if p.is_file() and ("tables" in p.parts or "arrays" in p.parts)}


def _units(ws: Path) -> dict[str, int]:
    return json.loads((ws / "summary.json").read_text())["provenance"]["units"]


def test_study_measure_and_bench_write_identical_units(tiny_study: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The same unit through three commands: identical part names, hashes and numbers
    (bitwise: same backend, dtype, batch and thread count)."""
    ws = tmp_path / "ws"
    assert cli.main(["measure", "--quant", "Q8_0", "--quant", "Q4_0", "--corpus", "prose",
                     "--ctx", "64", "--chunks", "1", "--workspace", str(ws), "--json"]) == 0
    for model in (["--model", "embedded", "--reference"], ["--model", "Q8_0"],
                  ["--model", "Q4_0"]):
        assert cli.main(["bench", *model, "--task", "arith_mc", "--limit", "8",
                         "--workspace", str(ws), "--json"]) == 0
    capsys.readouterr()
    mine, study = _parts(ws), _parts(tiny_study)
    noise = {k for k in study if "noise-floor@" in k}  # the study's noise floor: its own units
    assert noise and sorted(mine) == sorted(set(study) - noise)
    for name in mine:
        assert mine[name][0] == study[name][0], f"{name}: another unit hash"
        assert mine[name][1] == study[name][1], f"{name}: other numbers"
    assert sorted(p.name for p in (ws / "arrays" / "reference").iterdir()) == sorted(
        p.name for p in (tiny_study / "arrays" / "reference").iterdir())


def test_measure_into_a_study_then_study_recomputes_and_deletes_nothing(
        tiny_study: Path, tiny_config: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ws = copy_workspace(tiny_study, tmp_path / "ws")
    # another command adds a model outside the study's config
    assert cli.main(["measure", "--quant", "rtn-w4g64-asym", "--corpus", "prose", "--ctx", "64",
                     "--chunks", "1", "--workspace", str(ws), "--json"]) == 0
    before = _mtimes(ws)
    assert cli.main(["study", str(tiny_config), "--out", str(ws), "--json"]) == 0
    capsys.readouterr()
    assert _units(ws)["run"] == 0
    assert _mtimes(ws) == before  # nothing recomputed, nothing deleted
    assert (ws / "tables" / "fidelity" / "rtn-w4g64-asym@prose-").parent.is_dir()
    assert any(p.name.startswith("rtn-w4g64-asym@") for p in (ws / "tables" / "fidelity").iterdir())
    summary = json.loads((ws / "summary.json").read_text())
    assert "rtn-w4g64-asym" not in json.dumps(summary["cohort"])  # the configured cohort only


def test_changed_inputs_redo_exactly_their_units(tiny_study: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ws = copy_workspace(tiny_study, tmp_path / "ws")
    n_units = _units(tiny_study)["run"]
    # the quants' numerics: their units redo, the reference's stay
    cfg = write_config(tmp_path / "c1", TINY_CONFIG.replace(
        'recipes = ["Q8_0", "Q4_0"]', 'recipes = ["Q8_0", "Q4_0"]\nnumerics = "weights"'))
    assert cli.main(["study", str(cfg), "--out", str(ws), "--json"]) == 0
    u = _units(ws)
    ref_units = 3  # the reference's corpus store, its benchmark and the noise floor
    assert u == {"run": n_units - ref_units, "skipped": ref_units}
    # the reference's dtype: every unit redoes
    cfg = write_config(tmp_path / "c2", TINY_CONFIG + '\n[reference]\ndtype = "bfloat16"\n')
    assert cli.main(["study", str(cfg), "--out", str(ws), "--json"]) == 0
    capsys.readouterr()
    assert _units(ws) == {"run": n_units, "skipped": 0}
    fid = _parts(ws)
    assert len([k for k in fid if k.startswith("fidelity/")]) == 2  # replaced, not added


def test_the_prompts_variant_is_each_prompts_kld_once(tiny_study: Path) -> None:
    """The cohort's ``kld_mean@prompts`` is the mean of each quant's per-prompt KLD over the
    benchmark's prompts, counted once although ``arith_mc:acc_norm`` scores them again."""
    import json

    import pyarrow.parquet as pq

    summary = json.loads((tiny_study / "summary.json").read_text())
    rows = [r for p in sorted((tiny_study / "tables" / "prompt_fidelity").glob("*.parquet"))
            for r in pq.read_table(p).to_pylist()]
    for row in summary["cohort"]["rows"]:
        mine = [r["kld_mean"] for r in rows if r["model"] == row["model"]]
        assert len(mine) == 8
        got = row["metrics"]["kld_mean@prompts"]["value"]
        assert got == pytest.approx(sum(mine) / len(mine), rel=1e-12)
