from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from quantfid.errors import FormatError
from quantfid.ingest import lm_eval

V049 = "lm_eval/v0.4.9/ref/made-up__ref"
DATE = "2025-06-01T10-00-00.123456"


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _by(res, bench: str) -> dict[str, object]:
    return {o.prompt_id: o for o in res.outcomes if o.benchmark == bench}


def test_directory_reads_newest_run_and_names_benchmarks(fix):
    res = lm_eval.read([fix / "lm_eval/v0.4.9/ref"], "ref")
    assert sorted(res.by_benchmark()) == ["arc_mini", "arc_mini:acc_norm", "code_mini",
                                          "gsm_mini/flexible-extract", "gsm_mini/strict-match"]
    # the older partial run (3 docs) in the same folder is ignored
    assert len(_by(res, "arc_mini")) == 6
    assert any("wiki_mini" in w and "no pass/fail metric" in w for w in res.warnings)
    assert {o.source for o in res.outcomes} == {"lm-eval"}
    assert {o.source_version for o in res.outcomes} == {"0.4.9"}
    info = res.benchmarks["gsm_mini/strict-match"]
    assert info["filter"] == "strict-match" and info["n_shot"] == 5 and info["metric"] == "exact_match"
    assert res.benchmarks["arc_mini:acc_norm"]["metric"] == "acc_norm"


def test_acc_and_acc_norm_match_recomputation_from_loglikelihoods(fix):
    path = fix / V049 / f"samples_arc_mini_{DATE}.jsonl"
    res = lm_eval.read([path], "ref")
    acc, norm = _by(res, "arc_mini"), _by(res, "arc_mini:acc_norm")
    for s in _lines(path):
        lls = [float(r[0]) for r in s["filtered_resps"]]
        conts = [s["arguments"][f"gen_args_{k}"]["arg_1"] for k in range(len(lls))]
        gold = int(s["target"])
        pred = max(range(len(lls)), key=lambda k: lls[k])
        pred_norm = max(range(len(lls)), key=lambda k: lls[k] / len(conts[k]))
        pid = str(s["doc_id"])
        assert acc[pid].passed == (pred == gold)
        assert norm[pid].passed == (pred_norm == gold)
        assert acc[pid].samples == 1
        ctx = s["arguments"]["gen_args_0"]["arg_0"]
        assert acc[pid].prompt_hash == hashlib.sha256(ctx.encode()).hexdigest()


def test_prompt_texts_carry_prompt_choices_and_gold(fix):
    res = lm_eval.read([fix / V049 / f"samples_arc_mini_{DATE}.jsonl"], "ref")
    pts = {p.prompt_id: p for p in res.prompts if p.benchmark == "arc_mini"}
    p = pts["0"]
    assert p.prompt == "Question: What colour is a ripe plum usually?\nAnswer:"
    assert p.continuations == (" green", " purple", " white", " blue")
    assert p.gold == 1 and p.contexts == ()
    gen = {p.prompt_id: p for p in lm_eval.read(
        [fix / V049 / f"samples_gsm_mini_{DATE}.jsonl"], "ref").prompts
        if p.benchmark == "gsm_mini/flexible-extract"}
    assert gen["1"].continuations == () and gen["1"].responses == ("5",)
    assert gen["1"].prompt.endswith("How many are left?\nAnswer:")
    assert gen["1"].target == "8-3=5 #### 5"


def test_multi_filter_task_and_filter_choice(fix):
    path = fix / V049 / f"samples_gsm_mini_{DATE}.jsonl"
    res = lm_eval.read([path], "ref")
    strict = _by(res, "gsm_mini/strict-match")
    flex = _by(res, "gsm_mini/flexible-extract")
    for s in _lines(path):  # independent: exact match of filtered answer against '#### N'
        want = s["filtered_resps"][0] == s["target"].split("#### ")[1]
        side = strict if s["filter"] == "strict-match" else flex
        assert side[str(s["doc_id"])].passed == want
    one = lm_eval.read([path], "ref", filter_name="flexible-extract")
    assert sorted(one.by_benchmark()) == ["gsm_mini"]
    assert {k: o.passed for k, o in _by(one, "gsm_mini").items()} == \
        {k: o.passed for k, o in flex.items()}
    with pytest.raises(FormatError, match=r"no filter 'nope'.*strict-match, flexible-extract"):
        lm_eval.read([path], "ref", filter_name="nope")


def test_pass_at_1_over_repeats_uses_threshold(fix):
    path = fix / V049 / f"samples_code_mini_{DATE}.jsonl"
    res = lm_eval.read([path], "ref")
    got = _by(res, "code_mini")
    assert {k: (o.score, o.samples) for k, o in got.items()} == \
        {"0": (2 / 3, 3), "1": (1.0, 3), "2": (1 / 3, 3)}
    assert [got[k].passed for k in "012"] == [True, True, False]
    strict = _by(lm_eval.read([path], "ref", pass_threshold=0.9), "code_mini")
    assert [strict[k].passed for k in "012"] == [False, True, False]


def test_v045_without_filter_key_matches_v049(fix):
    new = lm_eval.read([fix / "lm_eval/v0.4.9/ref"], "ref", tasks={"gsm_mini", "arc_mini"})
    mid = lm_eval.read([fix / "lm_eval/v0.4.5"], "ref")
    key = lambda r: sorted((o.benchmark, o.prompt_id, o.passed, o.prompt_hash) for o in r.outcomes)  # noqa: E731
    assert key(mid) == key(new)
    assert {o.source_version for o in mid.outcomes} == {None}


def test_legacy_v042_json_array(fix):
    legacy = lm_eval.read([fix / "lm_eval/v0.4.2"], "ref")
    new = lm_eval.read([fix / V049 / f"samples_arc_mini_{DATE}.jsonl"], "ref")
    key = lambda r: sorted((o.benchmark, o.prompt_id, o.passed, o.prompt_hash) for o in r.outcomes)  # noqa: E731
    assert key(legacy) == key(new)  # prompt_hash computed as lm-eval does
    pts = [p for p in legacy.prompts if p.benchmark == "arc_mini"]
    assert pts[0].continuations == (" green", " purple", " white", " blue") and pts[0].gold == 1


def test_bad_line_names_file_and_line(copy_fixture):
    d = copy_fixture("lm_eval/v0.4.9/ref/made-up__ref")
    p = d / f"samples_arc_mini_{DATE}.jsonl"
    lines = p.read_text().splitlines()
    lines[2] = lines[2][:40]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=r"samples_arc_mini_.*\.jsonl:3: invalid JSON"):
        lm_eval.read([p], "ref")


def test_duplicate_doc_is_an_error(copy_fixture):
    d = copy_fixture("lm_eval/v0.4.9/ref/made-up__ref")
    p = d / f"samples_arc_mini_{DATE}.jsonl"
    lines = p.read_text().splitlines()
    p.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(FormatError, match=r":7: doc_id 0 appears twice for filter 'none' \(first at .*:1\)"):
        lm_eval.read([p], "ref")


def test_missing_metric_in_later_sample_is_an_error(copy_fixture):
    d = copy_fixture("lm_eval/v0.4.9/ref/made-up__ref")
    p = d / f"samples_arc_mini_{DATE}.jsonl"
    rows = _lines(p)
    del rows[4]["acc"]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FormatError, match=r":5: sample has no 'acc'"):
        lm_eval.read([p], "ref")


def test_task_selection_and_not_a_samples_file(fix):
    res = lm_eval.read([fix / "lm_eval/v0.4.9/ref"], "ref", tasks={"code_mini"})
    assert sorted(res.by_benchmark()) == ["code_mini"]
    with pytest.raises(FormatError, match="no samples for task"):
        lm_eval.read([fix / "lm_eval/v0.4.9/ref"], "ref", tasks={"nope"})
    with pytest.raises(FormatError, match="not an lm-eval samples file"):
        lm_eval.read([fix / V049 / f"results_{DATE}.json"], "ref")
    with pytest.raises(FormatError, match="several directories"):
        lm_eval.read([fix / "lm_eval/v0.4.9"], "ref")


def test_results_named_after_json_output_path(copy_fixture):
    d = copy_fixture(V049)
    (d / f"results_{DATE}.json").rename(d / f"myrun_{DATE}.json")
    res = lm_eval.read([d / f"samples_gsm_mini_{DATE}.jsonl"], "ref")
    assert {o.source_version for o in res.outcomes} == {"0.4.9"}
    assert res.benchmarks["gsm_mini/strict-match"]["n_shot"] == 5


def test_acc_norm_only_task(copy_fixture):
    d = copy_fixture(V049)
    p = d / f"samples_arc_mini_{DATE}.jsonl"
    rows = _lines(p)
    for r in rows:
        del r["acc"]
        r["metrics"] = ["acc_norm"]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = lm_eval.read([p], "ref")
    assert sorted(res.by_benchmark()) == ["arc_mini:acc_norm"]
    assert [o.passed for o in res.outcomes] == [bool(r["acc_norm"]) for r in rows]
