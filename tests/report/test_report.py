import csv
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from quantfid.report.build import FORMAT_VERSION, SECTIONS, write_report
from quantfid.store.workspace import Workspace

from .conftest import NOISE_METHOD, provenance


def _prov(tmp_path, embedded_ref=True):
    return provenance(Workspace(tmp_path / "ws"), embedded_ref=embedded_ref)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def _md_tables(md: str) -> list[list[str]]:
    """Every Markdown table as its list of lines."""
    out, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def _width(table: list[str]) -> int:
    return len(re.split(r"(?<!\\)\|", table[0].strip().strip("|")))


def test_writes_every_file_and_every_number(volume_report, analysis):
    files = volume_report
    out = files.html.parent
    s = json.loads(files.summary.read_text())
    assert s["format_version"] == FORMAT_VERSION == 2
    assert set(SECTIONS) | {"provenance", "verdict", "methods", "report"} <= set(s)
    for key in SECTIONS:  # every number of the analysis is in summary.json, unchanged
        assert sorted(_numbers(s[key])) == sorted(_numbers(analysis[key]))
    assert s["provenance"]["timings_s"] == {"measure": 1.5}
    assert [p.name for p in files.plots] == ["fidelity_vs_score.png", "robustness_heatmap.png",
                                             "volume_direction.png", "failure_prediction.png",
                                             "router_accuracy.png"]
    for p in files.plots:
        with PILImage.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 150
    md = files.markdown.read_text()
    refs = re.findall(r"\]\((plots/[^)]+)\)", md)
    assert len(refs) == len(files.plots) and all((out / r).is_file() for r in refs)
    # every CSV the report links exists, and summary.json lists them
    links = set(re.findall(r"\]\((csv/[^)]+)\)", md))
    html = files.html.read_text()
    assert links == set(re.findall(r'href="(csv/[^"]+)"', html)) and len(links) >= 8
    assert all((out / f).is_file() for f in links)
    assert set(s["report"]["csv"]) == {f"csv/{p.name}" for p in files.csv} >= links
    # the CSVs hold every row, unrounded
    with (out / "csv" / "correlations.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(analysis["correlations"])
    assert float(rows[0]["rho"]) == pytest.approx(analysis["robustness"]["rows"][0]["rho"], rel=1e-12)
    # the cohort table carries every quant
    for row in analysis["cohort"]["rows"]:
        assert f"| {row['model']} |" in md


def test_html_is_self_contained_and_ordered(volume_report):
    html = volume_report.html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert html.count('<img src="data:image/png;base64,') == 5
    pos = [html.index(h) for h in ('id="verdict"', 'id="numbers"', ">Cohort<", 'id="cohort-table"',
                                   ">Plots<", ">Details<", "<summary>Method and caveats<")]
    assert pos == sorted(pos)
    assert html.count("<details") >= 8 and "<details open" not in html


def test_caveat_only_for_embedded_reference(tmp_path, analysis, volume_report):
    a = volume_report
    b = write_report(tmp_path / "b", analysis, _prov(tmp_path, False))
    assert "4-bit checkpoint" in a.html.read_text() and "4-bit checkpoint" in a.markdown.read_text()
    assert "4-bit checkpoint" not in b.html.read_text()
    md = a.markdown.read_text()
    assert md.index("4-bit checkpoint") < md.index("## Cohort")  # on the first screen


def test_verdict_first_and_from_the_analysis(volume_report, analysis):
    """The report opens with the analysis's verdict, whose numbers are the analysis's own."""
    from quantfid.analysis import verdict as analysis_verdict

    files = volume_report
    vol = analysis_verdict(analysis)
    md = files.markdown.read_text()
    assert md.index(vol.headline) < md.index("## Cohort")
    assert all(md.index(f) < md.index("## Cohort") for f in vol.findings)
    assert json.loads(files.summary.read_text())["verdict"] == vol.to_json()
    assert vol.flags["ranks_full_cohort"]  # the volume cohort: strong over the full cohort
    primary = analysis["cohort"]["settings"]["primary"]
    full = next(c for c in analysis["correlations"] if c["subset"] == "full" and c["score"] == "mean"
                and f"{c['metric']}@{c['corpus']}:{c['ctx']}" == primary)
    assert "rho between" in vol.findings[0] and f"{full['rho']:.2f}" in vol.findings[0]
    assert 3 <= len(vol.findings) <= 5


def test_rules_are_stated_in_the_report(volume_report):
    from quantfid.report.verdict import VERDICT_RULES

    assert len(VERDICT_RULES) >= 6 and any("Router" in r for r in VERDICT_RULES)
    assert any("unresolved" in r for r in VERDICT_RULES)
    md = volume_report.markdown.read_text()
    assert all(r in md for r in VERDICT_RULES)


def test_nan_becomes_null(tmp_path, analysis):
    from quantfid.report.build import summary
    from quantfid.report.verdict import verdict

    a = json.loads(json.dumps(analysis))
    a["failure_prediction"]["rows"][0]["ratio"] = float("nan")
    a["failure_prediction"]["rows"][1]["auroc"] = np.float64(0.61)
    s = json.loads(json.dumps(summary(a, _prov(tmp_path), verdict(a)), allow_nan=False))
    assert s["failure_prediction"]["rows"][0]["ratio"] is None
    assert s["failure_prediction"]["rows"][1]["auroc"] == pytest.approx(0.61)


def test_cohort_table_orders_by_bits_per_weight() -> None:
    from quantfid.report.build import _by_bpw

    rows = [{"model": "a", "bits_per_weight": 4.5}, {"model": "b", "bits_per_weight": None},
            {"model": "c", "bits_per_weight": 8.5}, {"model": "d", "bits_per_weight": 4.5}]
    assert [r["model"] for r in sorted(rows, key=_by_bpw)] == ["c", "a", "d", "b"]


def test_tables_are_narrow(volume_report, tiny_report):
    """report.md: no table wider than 13 columns; the cohort table at most 10; long tables are
    cut short with a link to their CSV."""
    for files in (volume_report, tiny_report):
        md = files.markdown.read_text()
        tables = _md_tables(md)
        assert tables and max(_width(t) for t in tables) <= 13
        cohort = tables[0]
        assert cohort[0].startswith("| quant | bits/weight | size MB |") and _width(cohort) <= 10
        assert all(len(t) - 2 <= 40 for t in tables[2:] if "zones" not in t[0])


def test_report_of_the_tiny_study(tiny_report):
    """A real run_all output: the verdict says the sample cannot tell, the noise floor and the
    numerics of each quant are shown, every interval names its method."""
    files = tiny_report
    md = files.markdown.read_text()
    v = files.verdict
    first = md[:md.index("## Cohort")]
    assert v.headline in first and "Too few quants (2)" in v.headline
    assert "unresolved" in v.findings[1] and "prompts would resolve it" in v.findings[1]
    assert any("different numerics" in c for c in v.caveats)  # Q8_0 ggml-cpu, Q4_0 weights
    assert "Numerics: ggml quants were measured under different numerics" in first
    for jargon in ("t-approximation", "lowest_k", "link persists", "permutation"):
        assert jargon not in first
    cohort = _md_tables(md)[0]
    assert "noise floor" in cohort[0] and "near ref." in cohort[0]
    row = {line.split("|")[1].strip(): line for line in cohort[2:]}
    assert "within" in row["Q8_0"] and "above" in row["Q4_0"]
    s = json.loads(files.summary.read_text())
    key = s["cohort"]["settings"]["primary"]
    assert s["cohort"]["noise_floor"][key]["method"] == NOISE_METHOD
    rows = {r["model"]: r for r in s["cohort"]["rows"]}
    assert rows["Q8_0"]["metrics"][key]["within_noise_floor"] is True
    assert rows["Q4_0"]["metrics"][key]["within_noise_floor"] is False
    assert rows["Q8_0"]["numerics"] == {"backend": "hf", "numerics": "ggml-cpu",
                                        "dtype": "float32", "device": "cpu"}
    assert s["resolution"]["scores"]["mean"]["paired"]["status"] == "unresolved"
    assert "moving-block-bootstrap" in s["methods"]["fidelity_interval_methods"]
    # every plot has a one-line takeaway under it
    images = re.findall(r"!\[[^\]]*\]\(plots/[^)]+\)\n\n\*\*([^*]+)\*\*", md)
    assert len(images) == len(files.plots) >= 3


def test_noise_floor_line_on_the_kld_plot(tiny_analysis):
    """The fidelity plot draws the floor: without the floor the picture differs."""
    from quantfid.report import figures

    a = json.loads(json.dumps(tiny_analysis))
    with_floor = figures.fidelity(a, {})
    a["cohort"]["noise_floor"] = {}
    without = figures.fidelity(a, {})
    assert with_floor is not None and without is not None
    assert with_floor.plot.png != without.plot.png
    assert figures.fidelity(a, {}).plot.png == without.plot.png  # deterministic otherwise
