from __future__ import annotations

import json

import pytest

from quantfid.errors import MismatchError
from quantfid.ingest import ingest
from quantfid.ingest.validate import diff_sets
from quantfid.store.workspace import Workspace

DATE = "2025-06-01T10-00-00.123456"
ARC = f"lm_eval/v0.4.9/q4/made-up__q4/samples_arc_mini_{DATE}.jsonl"


def test_diff_sets_reports_each_difference():
    mine = {"1": "a", "2": "b", "3": "x", "9": None}
    theirs = {"1": "a", "2": "b", "3": "c", "4": "d", "5": "e"}
    d = diff_sets("q4", "ref", "arc", mine, theirs, {"filter": "f1"}, {"filter": "f2"},
                  other_label="reference")
    assert d.missing == ("4", "5") and d.extra == ("9",) and d.hash_differs == ("3",)
    assert not d.ok and not d.fixable
    msg = d.message()
    assert "model q4: benchmark arc has 4 prompts, reference ref has 5; 2 missing: 4, 5; " \
           "1 not in ref: 9" in msg
    assert "prompt_hash differs from reference ref on 1 prompt(s): doc 3" in msg
    assert "filter 'f1', the other has 'f2'" in msg
    assert d.dropped() == ("3", "4", "5", "9")
    same = diff_sets("q4", "ref", "arc", {"1": None}, {"1": "a"})
    assert same.ok  # a missing hash on one side is not a difference


def _edit_q4(copy_fixture, drop_doc: int | None = None, rehash_doc: int | None = None):
    p = copy_fixture(ARC)
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    if rehash_doc is not None:
        rows[rehash_doc]["prompt_hash"] = "0" * 64
    if drop_doc is not None:
        rows = [r for r in rows if r["doc_id"] != drop_doc]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


@pytest.fixture
def ws(tmp_path, fix):
    w = Workspace(tmp_path / "ws")
    ingest(w, "lm-eval", [fix / f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl"],
           "ref", reference=True)
    return w


def test_missing_and_hash_mismatch_are_errors(ws, copy_fixture):
    p = _edit_q4(copy_fixture, drop_doc=4, rehash_doc=1)
    with pytest.raises(MismatchError) as e:
        ingest(ws, "lm-eval", [p], "q4")
    msg = str(e.value)
    assert "model q4: benchmark arc_mini has 5 prompts, reference ref has 6; 1 missing: 4" in msg
    assert "prompt_hash differs from reference ref on 1 prompt(s): doc 1" in msg
    assert "--intersect" in msg
    assert not any(o.model == "q4" for o in ws.outcomes())


def test_intersect_drops_from_every_model_and_records(ws, copy_fixture):
    p = _edit_q4(copy_fixture, drop_doc=4, rehash_doc=1)
    s = ingest(ws, "lm-eval", [p], "q4", intersect=True)
    by = {b.benchmark: b for b in s.benchmarks}
    assert by["arc_mini"].dropped == ("1",) and by["arc_mini"].dropped_others == {"ref": ["1", "4"]}
    ids = {}
    for o in ws.outcomes():
        ids.setdefault((o.model, o.benchmark), set()).add(o.prompt_id)
    assert ids[("q4", "arc_mini")] == ids[("ref", "arc_mini")] == {"0", "2", "3", "5"}
    assert ids[("ref", "arc_mini:acc_norm")] == {"0", "2", "3", "5"}
    rec = ws.manifest["ingest"]["q4::arc_mini"]
    assert rec["dropped"] == ["1"] and rec["dropped_others"] == {"ref": ["1", "4"]}


def test_filter_mismatch_is_not_intersectable(tmp_path, fix):
    w = Workspace(tmp_path / "w")
    gsm = f"samples_gsm_mini_{DATE}.jsonl"
    ingest(w, "lm-eval", [fix / "lm_eval/v0.4.9/ref/made-up__ref" / gsm], "ref",
           reference=True, filter_name="strict-match")
    with pytest.raises(MismatchError, match="filter 'flexible-extract', the other has 'strict-match'"):
        ingest(w, "lm-eval", [fix / "lm_eval/v0.4.9/q4/made-up__q4" / gsm], "q4",
               filter_name="flexible-extract", intersect=True)


def test_same_prompts_pass_and_second_source_is_refused(ws, fix, tmp_path):
    ingest(ws, "lm-eval", [fix / ARC], "q4")
    table = tmp_path / "t.csv"
    table.write_text("prompt_id,passed\n0,1\n")
    with pytest.raises(MismatchError, match="already has outcomes from ingest-lm-eval-q4-arc_mini"):
        ingest(ws, "table", [table], "q4", benchmarks=["arc_mini"])


def test_reingest_after_intersect_is_a_noop_with_kept_counts(ws, copy_fixture, fix):
    p = _edit_q4(copy_fixture, drop_doc=4)
    ingest(ws, "lm-eval", [p], "q4", intersect=True)
    again = ingest(ws, "lm-eval", [p], "q4")
    by = {b.benchmark: b for b in again.benchmarks}
    assert by["arc_mini"].status == "unchanged" and by["arc_mini"].n == 5
    ref_again = ingest(ws, "lm-eval",
                       [fix / f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl"], "ref")
    assert {b.benchmark: (b.status, b.n) for b in ref_again.benchmarks}["arc_mini"] == ("unchanged", 5)


def test_reference_ingested_after_quant_is_checked_against_it(tmp_path, fix, copy_fixture):
    w = Workspace(tmp_path / "w2")
    ingest(w, "lm-eval", [fix / ARC], "q4")
    p = copy_fixture(f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl")
    rows = [json.loads(x) for x in p.read_text().splitlines()][:-1]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MismatchError, match="model ref: benchmark arc_mini has 5 prompts, model q4 has 6; 1 missing: 5"):
        ingest(w, "lm-eval", [p], "ref", reference=True)
