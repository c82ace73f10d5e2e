from __future__ import annotations

import pytest

from quantfid.errors import FormatError, QuantfidError
from quantfid.ingest import table


def test_csv_with_mapping_and_model_column(fix):
    m = table.parse_map("prompt_id=item,passed=ok,score=pscore,benchmark=task")
    ref = table.read([fix / "table/results.csv"], "ref", mapping=m)
    q4 = table.read([fix / "table/results.csv"], "q4", mapping=m)
    assert {o.prompt_id: o.passed for o in ref.outcomes} == \
        {"p1": True, "p2": False, "p3": True, "p4": False}
    assert {o.prompt_id: o.passed for o in q4.outcomes} == \
        {"p1": True, "p2": True, "p3": False, "p4": False}
    assert {o.benchmark for o in ref.outcomes} == {"quiz"}
    assert ref.outcomes[0].score == 1.0


def test_jsonl_scores_threshold_and_prompt(fix):
    res = table.read([fix / "table/scores.jsonl"], "m", benchmark="arith")
    got = {o.prompt_id: (o.passed, o.samples) for o in res.outcomes}
    assert got == {"a": (True, 4), "b": (False, 4), "c": (True, 4)}
    strict = table.read([fix / "table/scores.jsonl"], "m", benchmark="arith", pass_threshold=0.6)
    assert {o.prompt_id: o.passed for o in strict.outcomes} == {"a": True, "b": False, "c": False}
    assert {p.prompt_id: p.prompt for p in res.prompts}["b"] == "3+5?"


@pytest.mark.parametrize(("cell", "want"), [("1", True), ("0", False), ("TRUE", True),
                                            ("false", False), ("Pass", True), ("fail", False),
                                            (1, True), (0.0, False), (True, True)])
def test_passed_parsing(cell, want):
    assert table.parse_passed(cell, "x") is want


@pytest.mark.parametrize("cell", ["maybe", "2", 0.5, "", "passes"])
def test_passed_parsing_rejects(cell):
    with pytest.raises(FormatError, match="row 9: passed value"):
        table.parse_passed(cell, "row 9")


def test_bad_cell_names_row(fix):
    with pytest.raises(FormatError, match=r"bad.csv:3: passed value 'maybe'"):
        table.read([fix / "table/bad.csv"], "m", benchmark="x")


def test_missing_columns_and_bad_map(fix):
    with pytest.raises(FormatError, match=r"no column 'prompt_id'.*--map prompt_id=COLUMN"):
        table.read([fix / "table/results.csv"], "ref")
    with pytest.raises(FormatError, match="give --benchmark NAME"):
        table.read([fix / "table/scores.jsonl"], "m")
    with pytest.raises(QuantfidError, match="unknown field 'bogus'"):
        table.parse_map("bogus=x")
    with pytest.raises(QuantfidError, match="expected FIELD=COLUMN"):
        table.parse_map("prompt_id")
