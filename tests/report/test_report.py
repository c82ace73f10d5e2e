import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from quantfid import embedded
from quantfid.report.build import SECTIONS, write_report
from quantfid.report.provenance import from_workspace
from quantfid.store.workspace import Workspace


def _prov(tmp_path, embedded_ref=True):
    ws = Workspace(tmp_path / "ws")
    p = from_workspace(ws, seeds={"analysis": 1}, timings={"measure": 1.5})
    p["reference"] = embedded.MODEL_ID if embedded_ref else "my-ref"
    return p


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def test_writes_every_file_and_every_number(tmp_path, analysis):
    files = write_report(tmp_path / "out", analysis, _prov(tmp_path))
    s = json.loads(files.summary.read_text())
    assert set(SECTIONS) | {"provenance", "verdict"} <= set(s)
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
    assert len(refs) == len(files.plots) and all((tmp_path / "out" / r).is_file() for r in refs)
    # the cohort table carries every quant with its score
    for row in analysis["cohort"]["rows"]:
        assert f"| {row['model']} |" in md


def test_html_is_self_contained_and_ordered(tmp_path, analysis):
    html = write_report(tmp_path, analysis, _prov(tmp_path)).html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert html.count('<img src="data:image/png;base64,') == 5
    pos = [html.index(h) for h in (">Verdict<", ">Cohort<", ">Plots<", ">Method and caveats<")]
    assert pos == sorted(pos)


def test_caveat_only_for_embedded_reference(tmp_path, analysis):
    a = write_report(tmp_path / "a", analysis, _prov(tmp_path, True))
    b = write_report(tmp_path / "b", analysis, _prov(tmp_path, False))
    assert "4-bit checkpoint" in a.html.read_text() and "4-bit checkpoint" in a.markdown.read_text()
    assert "4-bit checkpoint" not in b.html.read_text()


def test_verdict_first_and_from_the_analysis(tmp_path, analysis):
    """The report opens with the analysis's verdict, whose numbers are the analysis's own."""
    from quantfid.analysis import verdict as analysis_verdict

    files = write_report(tmp_path, analysis, _prov(tmp_path))
    vol = analysis_verdict(analysis)
    md = files.markdown.read_text()
    assert md.index(vol.headline) < md.index("## Cohort")
    assert all(f in md for f in vol.findings)
    assert json.loads(files.summary.read_text())["verdict"] == vol.to_json()
    assert vol.flags["ranks_full_cohort"]  # the volume cohort: strong over the full cohort
    primary = analysis["cohort"]["settings"]["primary"]
    full = next(c for c in analysis["correlations"] if c["subset"] == "full" and c["score"] == "mean"
                and f"{c['metric']}@{c['corpus']}:{c['ctx']}" == primary)
    assert f"rho = {full['rho']:.2f}" in vol.findings[0]


def test_rules_are_stated_in_the_report(tmp_path, analysis):
    from quantfid.report.verdict import RULES

    assert len(RULES) >= 4 and any("Router" in r for r in RULES)
    md = write_report(tmp_path, analysis, _prov(tmp_path)).markdown.read_text()
    assert all(r in md for r in RULES)


def test_nan_becomes_null(tmp_path, analysis):
    a = json.loads(json.dumps(analysis))
    a["failure_prediction"]["rows"][0]["ratio"] = float("nan")
    a["failure_prediction"]["rows"][1]["auroc"] = np.float64(0.61)
    s = json.loads(write_report(tmp_path, a, _prov(tmp_path)).summary.read_text())
    assert s["failure_prediction"]["rows"][0]["ratio"] is None
    assert s["failure_prediction"]["rows"][1]["auroc"] == pytest.approx(0.61)


def test_cohort_table_orders_by_bits_per_weight() -> None:
    from quantfid.report.build import _by_bpw

    rows = [{"model": "a", "bits_per_weight": 4.5}, {"model": "b", "bits_per_weight": None},
            {"model": "c", "bits_per_weight": 8.5}, {"model": "d", "bits_per_weight": 4.5}]
    assert [r["model"] for r in sorted(rows, key=_by_bpw)] == ["c", "a", "d", "b"]
