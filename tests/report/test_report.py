import json
import re
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from quantfid import embedded
from quantfid.report.build import SECTIONS, write_report
from quantfid.report.provenance import from_workspace
from quantfid.report.verdict import verdict
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


def _corr(subset, rule, rho, lo, hi, p, n):
    return {"metric": "kld_mean", "score": "mean", "subset": subset, "rule": rule, "n": n,
            "rho": rho, "p": p, "p_method": "t", "ci_low": lo, "ci_high": hi, "tau": None,
            "tau_p": None, "corpus": "prose", "ctx": 512}


def _result(silent_rho: float, silent_ci: tuple[float, float], silent_p: float,
            router: tuple[float, float, float] = (0.47, 0.41, 0.53)) -> dict[str, Any]:
    zone = [f"q{i}" for i in range(6)]
    return {
        "cohort": {"variants": [{"key": "kld_mean@prose:512", "stat": "kld_mean", "corpus": "prose",
                                 "ctx": 512}],
                   "settings": {"primary": "kld_mean@prose:512"}, "scores": ["a", "mean"],
                   "rows": [], "reference": "ref", "reference_scores": {"mean": 0.6}},
        "correlations": [_corr("full", None, -0.81, -0.95, -0.48, 0.0014, 12),
                         _corr("silent", "paired", silent_rho, *silent_ci, silent_p, 6),
                         _corr("silent", "band", 0.2, -0.5, 0.8, 0.6, 3)],
        "silent_zone": {"mean": {"paired": zone, "band": zone[:3], "lowest_k": zone}},
        "failure_prediction": {"rows": [
            {"model": f"q{i}", "subset": "all", "ratio": r, "auroc": 0.52 + 0.01 * i, "p": p}
            for i, (r, p) in enumerate([(1.08, 0.3), (1.22, 0.01), (1.1, 0.2)])]
            + [{"model": "q0", "subset": "ref_passed", "ratio": 9.0, "auroc": 0.99, "p": 0.0}]},
        "router": {"pooled": {"accuracy": router[0], "ci_low": router[1], "ci_high": router[2],
                              "p": 0.31, "decided": 280, "ties": 3, "disagree": 283},
                   "pairs": [{"a": "q0", "b": "q1"}, {"a": "q0", "b": "q2"}]},
    }


def test_verdict_collapse_quotes_the_numbers():
    v = verdict(_result(0.05, (-0.55, 0.65), 0.8))
    assert v.headline.startswith("kld_mean@prose:512 predicts quality across this cohort (rho = -0.81)")
    assert "stops near baseline" in v.headline
    full = v.findings[0]
    assert full.answer == "yes"
    assert "rho = -0.81 [-0.95, -0.48], p = 0.001" in full.text and "n = 12" in full.text
    paired = next(f for f in v.findings if f.topic == "silent_zone:paired")
    assert paired.answer == "no" and "n = 6) rho = 0.05 [-0.55, 0.65], p = 0.800" in paired.text
    band = next(f for f in v.findings if f.topic == "silent_zone:band")
    assert band.answer == "undetermined" and "3 quant(s), fewer than 4" in band.text
    fail = next(f for f in v.findings if f.topic == "failure_prediction")
    # the ref_passed subset (ratio 9) is not mixed in: median of 1.08, 1.22, 1.1
    assert fail.answer == "no" and "median 1.10 (range 1.08–1.22 over 3 quants)" in fail.text
    assert "p < 0.05 for 1 of 3" in fail.text
    router = next(f for f in v.findings if f.topic == "router")
    assert router.answer == "no" and "accuracy 0.470 [0.410, 0.530]" in router.text
    assert "2 pairs" in router.text and "280 decided" in router.text and "coin toss" in router.text


def test_verdict_still_ranks_and_router_beats_chance():
    v = verdict(_result(-0.9, (-0.99, -0.6), 0.001, router=(0.62, 0.56, 0.68)))
    paired = next(f for f in v.findings if f.topic == "silent_zone:paired")
    assert paired.answer == "yes" and "rho = -0.90" in paired.text
    assert "still ranks quants inside the silent zone" in v.headline
    assert next(f for f in v.findings if f.topic == "router").answer == "yes"


def test_verdict_weak_rho_counts_as_collapse_even_if_ci_excludes_zero():
    v = verdict(_result(-0.25, (-0.28, -0.2), 0.01))
    assert next(f for f in v.findings if f.topic == "silent_zone:paired").answer == "no"


def test_verdict_without_variants():
    v = verdict({"cohort": {"rows": []}, "correlations": []})
    assert v.findings == () and v.headline.startswith("No verdict")


def test_verdict_on_synthetic_cohort(analysis):
    """The synthetic cohort's outcomes degrade with KLD: the full-cohort finding is 'yes' and
    every number the verdict quotes is the analysis's own."""
    v = verdict(analysis)
    full = v.findings[0]
    entry = next(c for c in analysis["correlations"] if c["subset"] == "full"
                 and c["score"] == "mean" and f"{c['metric']}@{c['corpus']}:{c['ctx']}"
                 == analysis["cohort"]["settings"]["primary"])
    assert full.answer == "yes" and full.numbers["rho"] == entry["rho"]
    assert f"rho = {entry['rho']:.2f}" in full.text


def test_nan_becomes_null(tmp_path, analysis):
    a = json.loads(json.dumps(analysis))
    a["failure_prediction"]["rows"][0]["ratio"] = float("nan")
    a["failure_prediction"]["rows"][1]["auroc"] = np.float64(0.61)
    s = json.loads(write_report(tmp_path, a, _prov(tmp_path)).summary.read_text())
    assert s["failure_prediction"]["rows"][0]["ratio"] is None
    assert s["failure_prediction"]["rows"][1]["auroc"] == pytest.approx(0.61)
