from __future__ import annotations

import json

import pytest

from quantfid.errors import FormatError
from quantfid.ingest import evalplus

NEW = "evalplus/tiny-ref_temp_0.8.eval_results.json"


def _table(res):
    return {(o.benchmark, o.prompt_id): (o.score, o.samples, o.passed) for o in res.outcomes}


def _independent(path):
    """pass fraction per task: base = base_status == pass; plus = both pass (evalplus rule)."""
    ev = json.loads(path.read_text())["eval"]
    out = {}
    for t, ss in ev.items():
        base = [s["base_status"] == "pass" for s in ss]
        plus = [s["base_status"] == "pass" and s["plus_status"] == "pass" for s in ss]
        out[("humaneval", t)] = (sum(base) / len(ss), len(ss), sum(base) / len(ss) >= 0.5)
        out[("humaneval+", t)] = (sum(plus) / len(ss), len(ss), sum(plus) / len(ss) >= 0.5)
    return out


def test_new_format_base_and_plus(fix):
    res = evalplus.read([fix / NEW], "ref")
    assert _table(res) == _independent(fix / NEW)
    assert res.benchmarks["humaneval"]["dataset_hash"] == "5a0fc1f0c2b1d3e4f5a6b7c8d9e0f1a2"
    assert {o.source for o in res.outcomes} == {"evalplus"}


def test_old_format_matches_new(fix):
    old = evalplus.read([fix / "evalplus/v0.2.0/eval_results.json"], "ref")
    new = evalplus.read([fix / NEW], "ref")
    # same per-sample statuses, renamed tasks (Mbpp/2.. vs HumanEval/0..)
    rename = {"Mbpp/2": "HumanEval/0", "Mbpp/3": "HumanEval/1", "Mbpp/4": "HumanEval/2"}
    got = {(b.replace("mbpp", "humaneval"), rename[p]): v for (b, p), v in _table(old).items()}
    assert got == _table(new)


def test_base_only_and_threshold(fix):
    res = evalplus.read([fix / "evalplus/base_only"], "ref")
    assert sorted(res.by_benchmark()) == ["humaneval"]
    strict = evalplus.read([fix / NEW], "ref", pass_threshold=1.0)
    want = {k: v[0] == 1.0 for k, v in _independent(fix / NEW).items()}
    assert {(o.benchmark, o.prompt_id): o.passed for o in strict.outcomes} == want
    assert any(v[0] == 0.5 for v in _independent(fix / NEW).values())  # the rule matters here


def test_unknown_status_names_task(copy_fixture):
    p = copy_fixture(NEW)
    data = json.loads(p.read_text())
    data["eval"]["HumanEval/1"][1]["base_status"] = "maybe"
    p.write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"eval\['HumanEval/1'\]\[1\].base_status: unknown evalplus status 'maybe'"):
        evalplus.read([p], "ref")
