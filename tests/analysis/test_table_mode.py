"""Table mode: parsing, exclusions, the exact JSON shape, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from quantfid.analysis import analyze_table
from quantfid.analysis.table import read_rows
from quantfid.cli import main
from quantfid.errors import FormatError, QuantfidError

ROWS = [
    ("bf16", "0", "10.00", "70.0%", "60.0"),
    ("Q8_0", "0.001", "10.01", "70.1%", "60.1"),
    ("Q6_K", "0.004", "10.03", "69.8%", "59.9"),
    ("Q5_K_M", "0.010", "10.08", "69.6%", ""),
    ("Q4_K_M", "0.030", "10.20", "69.9%", "59.0"),
    ("Q4_0", "0.060", "10.50", "68.0%", "58.2"),
    ("Q3_K_M", "0.120", "11.00", "66.5%", "56.0"),
    ("IQ3_XS", "0.200", "11.60", "64.0%", "55.1"),
    ("Q2_K", "0.500", "13.00", "58.0%", "50.0"),
    ("IQ2_XS", "0.900", "15.00", "51.0 ± 1.2", "44.0"),
]
HEADER = ("quant", "kld", "ppl", "arc", "mmlu")


def _write(path: Path, kind: str) -> Path:
    if kind == "csv":
        path.write_text("\n".join(",".join(r) for r in [HEADER, *ROWS]) + "\n")
    elif kind == "tsv":
        path.write_text("\n".join("\t".join(r) for r in [HEADER, *ROWS]) + "\n")
    else:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join(["---"] * len(HEADER)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in ROWS]
        path.write_text("Some model card\n\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("kind", ["csv", "tsv", "md"])
def test_read_formats(tmp_path: Path, kind: str) -> None:
    header, rows = read_rows(_write(tmp_path / f"t.{kind}", kind))
    assert tuple(header) == HEADER
    assert [r[0] for r in rows] == [r[0] for r in ROWS]
    assert rows[3][4] == ""


def test_analysis_and_exact_shape(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.csv", "csv")
    res = analyze_table(p, ["kld", "ppl"], ["arc", "mmlu"], reference="bf16", n_boot=500,
                        rng=np.random.default_rng(0))
    j = res.to_json()
    assert list(j) == ["n", "excluded", "correlations", "silent_zone"]
    assert j["n"] == 9
    assert j["excluded"] == [{"name": "Q5_K_M", "missing": ["mmlu"]}]
    keys = ["metric", "score", "subset", "rule", "n", "rho", "p", "p_method", "ci_low", "ci_high",
            "tau", "tau_p", "corpus", "ctx"]
    assert all(list(c) == keys and c["corpus"] is None and c["ctx"] is None for c in j["correlations"])
    assert {c["rule"] for c in j["correlations"]} == {None, "band", "lowest_k"}
    assert list(j["silent_zone"]) == ["arc", "mmlu"]
    assert all(list(z) == ["band", "lowest_k"] for z in j["silent_zone"].values())
    # band: arc >= 0.99 * 70.0 = 69.3
    assert j["silent_zone"]["arc"]["band"] == ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"]
    assert j["silent_zone"]["arc"]["lowest_k"] == ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"]
    full = next(c for c in j["correlations"] if c["metric"] == "kld" and c["score"] == "mmlu"
                and c["subset"] == "full")
    kld = np.array([float(r[1]) for r in ROWS[1:] if r[4]])
    mmlu = np.array([float(r[4]) for r in ROWS[1:] if r[4]])
    assert full["n"] == 8 and full["p_method"] == "permutation-exact"
    assert full["rho"] == pytest.approx(stats.spearmanr(kld, mmlu).statistic)
    arc_full = next(c for c in j["correlations"] if c["metric"] == "kld" and c["score"] == "arc"
                    and c["subset"] == "full")
    assert arc_full["n"] == 9 and arc_full["p_method"] == "permutation-mc"


def test_errors(tmp_path: Path) -> None:
    p = _write(tmp_path / "t.csv", "csv")
    with pytest.raises(QuantfidError, match="no column 'nope'"):
        analyze_table(p, ["nope"], ["arc"], n_boot=10)
    with pytest.raises(QuantfidError, match="--reference"):
        analyze_table(p, ["kld"], ["arc"], reference="fp32", n_boot=10)
    bad = tmp_path / "bad.csv"
    bad.write_text("q,kld,arc\na,0.1,x70\nb,0.2,60\n")
    with pytest.raises(FormatError, match="row 1, column 'arc'"):
        analyze_table(bad, ["kld"], ["arc"], n_boot=10)


def test_cli_table_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path / "t.md", "md")
    rc = main(["analyze", "--table", str(p), "--metric", "kld", "--score", "arc", "--score", "mmlu",
               "--reference", "bf16", "--k", "3", "--n-boot", "200", "--json"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    assert list(j) == ["n", "excluded", "correlations", "silent_zone"]
    assert j["silent_zone"]["arc"]["lowest_k"] == ["Q8_0", "Q6_K", "Q5_K_M"]
    rc = main(["analyze", "--table", str(p), "--metric", "kld", "--score", "arc", "--n-boot", "100"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "rank correlations" in out and "verdict" in out
    assert main(["analyze", "--table", str(p), "--metric", "zzz", "--score", "arc"]) == 2
