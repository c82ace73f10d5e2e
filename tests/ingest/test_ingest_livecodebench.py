from __future__ import annotations

import hashlib
import json

import pytest

from quantfid.errors import FormatError
from quantfid.ingest import livecodebench

CODEGEN = "livecodebench/ref/Scenario.codegeneration_3_0.2_eval_all.json"


def test_codegeneration_scores_samples_and_rule(fix):
    path = fix / CODEGEN
    res = livecodebench.read([path], "ref")
    got = {o.prompt_id: o for o in res.outcomes}
    raw = json.loads(path.read_text())
    assert sorted(got) == sorted(e["question_id"] for e in raw)
    for e in raw:  # independent: fraction of True in graded_list, rule >= 0.5
        o = got[e["question_id"]]
        frac = sum(e["graded_list"]) / len(e["graded_list"])
        assert o.score == pytest.approx(frac)
        assert o.samples == len(e["graded_list"]) == 3
        assert o.passed == (frac >= 0.5)
        assert o.benchmark == "livecodebench" and o.source == "livecodebench"
        assert o.prompt_hash == hashlib.sha256(e["question_content"].encode()).hexdigest()
    info = res.benchmarks["livecodebench"]
    assert (info["scenario"], info["n"], info["temperature"]) == ("codegeneration", 4, 0.2)
    strict = {o.prompt_id: o.passed for o in livecodebench.read([path], "ref", pass_threshold=1.0).outcomes}
    assert strict == {"abc301_a": False, "abc301_b": True, "2891": False, "1873_c": False}


def test_prompt_text_from_question_and_code(fix):
    res = livecodebench.read([fix / CODEGEN], "ref")
    p = next(p for p in res.prompts if p.prompt_id == "abc301_b")
    assert p.prompt == "Read a string S and print it twice."
    assert len(p.responses) == 3 and p.continuations == ()


def test_directory_and_execution_scenario(fix):
    res = livecodebench.read([fix / "livecodebench/ref"], "ref")
    ex = {o.prompt_id: o.passed for o in res.outcomes if o.benchmark == "livecodebench-codeexecution"}
    assert ex == {"sample_0": False, "sample_1": True, "sample_2": True}
    named = livecodebench.read([fix / CODEGEN], "ref", benchmark="lcb-v5")
    assert {o.benchmark for o in named.outcomes} == {"lcb-v5"}


def test_percent_pass_at_1_is_rejected(copy_fixture):
    p = copy_fixture(CODEGEN)
    data = json.loads(p.read_text())
    data[0]["pass@1"] = 66.66666666666667
    p.write_text(json.dumps(data, indent=4))
    with pytest.raises(FormatError, match=r"\[0\]: pass@1 66.6.* disagrees with graded_list \(2/3\)"):
        livecodebench.read([p], "ref")


def test_missing_graded_list_names_entry(copy_fixture):
    p = copy_fixture(CODEGEN)
    data = json.loads(p.read_text())
    del data[2]["graded_list"]
    p.write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"\[2\]: problem 2891 has no graded_list"):
        livecodebench.read([p], "ref")
    p.write_text('{"not": "a list"}')
    with pytest.raises(FormatError, match="expected a non-empty JSON array"):
        livecodebench.read([p], "ref")
