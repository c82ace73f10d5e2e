"""Fuzz the ingest readers: lm-eval (v0.4.9, v0.4.5, v0.4.2 layouts), LiveCodeBench,
evalplus (both result formats), llama-perplexity logs (KLD, winogrande, hellaswag) and
per-prompt tables (CSV, TSV, JSONL).

Each mutated input must give a result that the workspace accepts (outcomes valid and in
their documented ranges, fidelity rows in range, benchmark facts JSON-safe, prompt texts
typed) or raise QuantfidError; anything else fails.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fuzz.mutate import dumps, expect, jsonl_mutations, mutated_bytes, mutated_json

from quantfid import atomic
from quantfid.errors import QuantfidError
from quantfid.ingest import evalplus, livecodebench, llamacpp, lm_eval, table
from quantfid.ingest import prompts as prompts_mod
from quantfid.ingest.common import IngestResult
from quantfid.ingest.run import _json_safe, _row, ingest
from quantfid.store.boundary import check_outcome, check_outcome_table
from quantfid.store.workspace import Workspace

FIX = Path(__file__).parents[1] / "ingest" / "fixtures"
DATE = "2025-06-01T10-00-00.123456"


def check_result(res: IngestResult, fraction_scores: bool = True) -> None:
    """What the workspace requires of a reader's result (see module doc)."""
    rows = [_row(o) for o in res.outcomes]
    for r in rows:
        check_outcome(r, "fuzz")
        if fraction_scores and r["score"] is not None:
            assert 0.0 <= r["score"] <= 1.0, r
    if rows:
        check_outcome_table(pa.Table.from_pylist(rows), "fuzz")
    for row in res.fidelity:
        assert isinstance(row["ctx"], int) and row["ctx"] >= 3
        assert row["n_tokens"] is None or row["n_tokens"] >= 1
        assert row["n_windows"] is None or row["n_windows"] >= 1
        for k, v in row.items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, v)
        for k in ("same_top1", "rms_dp"):
            assert row[k] is None or 0.0 <= row[k] <= 1.0
        for k in ("ppl_q", "ppl_ref", "ppl_ratio"):
            assert row[k] is None or row[k] > 0
        atomic.json_bytes(_json_safe(row))
    atomic.json_bytes(_json_safe(res.benchmarks))
    for bench, pts in res.prompts_by_benchmark().items():
        prompts_mod.to_table("m", pts, bench)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz-ingest")
    shutil.copytree(FIX, d / "fx")
    return d / "fx"


def _lines(path: Path) -> list[Any]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _restore(work: Path, rel: str) -> Path:
    p = work / rel
    shutil.copy2(FIX / rel, p)
    return p


# ---- lm-eval ----------------------------------------------------------------------------------
V049 = "lm_eval/v0.4.9/q4/made-up__q4"
V049_SAMPLES = f"{V049}/samples_gsm_mini_{DATE}.jsonl"
V049_RESULTS = f"{V049}/results_{DATE}.json"
V045 = "lm_eval/v0.4.5/made-up__ref"
V045_SAMPLES = f"{V045}/samples_gsm_mini_{DATE}.jsonl"
V045_RESULTS = f"{V045}/results_{DATE}.json"
V042_SAMPLES = "lm_eval/v0.4.2/pretrained__made-up__ref,dtype__float32_arc_mini.jsonl"
V042_RESULTS = "lm_eval/v0.4.2/results.json"


def _samples_or_results(samples: str, results: str) -> st.SearchStrategy[tuple[str, bytes]]:
    s = (FIX / samples)
    lines = _lines(s) if not s.read_bytes().lstrip().startswith(b"[") else None
    smut = (jsonl_mutations(lines) if lines is not None
            else mutated_json(json.loads(s.read_text())).map(dumps)
            | mutated_bytes(s.read_bytes(), text=True))
    r = json.loads((FIX / results).read_text())
    rmut = mutated_json(r).map(dumps) | mutated_bytes((FIX / results).read_bytes(), text=True)
    return st.tuples(st.just(samples), smut) | st.tuples(st.just(results), rmut)


def _lm_eval_case(work: Path, samples: str, results: str, which: str, data: bytes,
                  target: Path) -> None:
    _restore(work, samples)
    _restore(work, results)
    (work / which).write_bytes(data)
    res = expect(lambda: lm_eval.read([target], "m"), QuantfidError)
    if res is not None:
        check_result(res)


@given(_samples_or_results(V049_SAMPLES, V049_RESULTS))
def test_lm_eval_v049(work: Path, case: tuple[str, bytes]) -> None:
    _lm_eval_case(work, V049_SAMPLES, V049_RESULTS, *case, work / V049_SAMPLES)


@given(_samples_or_results(V045_SAMPLES, V045_RESULTS))
def test_lm_eval_v045_filters_from_results(work: Path, case: tuple[str, bytes]) -> None:
    _lm_eval_case(work, V045_SAMPLES, V045_RESULTS, *case, work / V045_SAMPLES)


@given(_samples_or_results(V042_SAMPLES, V042_RESULTS))
def test_lm_eval_v042_json_array(work: Path, case: tuple[str, bytes]) -> None:
    _lm_eval_case(work, V042_SAMPLES, V042_RESULTS, *case, work / V042_SAMPLES)


@given(jsonl_mutations(_lines(FIX / f"lm_eval/v0.4.9/q4/made-up__q4/samples_arc_mini_{DATE}.jsonl")))
def test_lm_eval_ingest_into_workspace(work: Path, tmp_path_factory: pytest.TempPathFactory,
                                       data: bytes) -> None:
    """The whole ingest (read, check, commit) into a workspace that has a reference."""
    ws_dir = work.parent / "ws"
    if not ws_dir.exists():
        ingest(Workspace(ws_dir), "lm-eval", [FIX / f"lm_eval/v0.4.9/ref/made-up__ref/"
                                              f"samples_arc_mini_{DATE}.jsonl"], "ref",
               reference=True)
    p = work / "arc" / f"samples_arc_mini_{DATE}.jsonl"
    p.parent.mkdir(exist_ok=True)
    p.write_bytes(data)
    ws = Workspace(ws_dir)
    before = {q: q.read_bytes() for q in ws_dir.rglob("*") if q.is_file()}
    s = expect(lambda: ingest(ws, "lm-eval", [p], "m", intersect=True), QuantfidError)
    if s is None:
        after = {q: q.read_bytes() for q in ws_dir.rglob("*") if q.is_file()}
        assert after == before
        return
    for o in ws.outcomes():
        check_outcome(_row(o), "stored")
    for part in ws.parts("outcomes"):  # back to the reference alone for the next example
        if "-m-" in part.name:
            part.unlink()
    for part in ws.parts("prompts"):
        if "-m-" in part.name:
            part.unlink()
    with ws.update() as m:
        m["models"].pop("m", None)
        m.pop("intersections", None)
        m["ingest"] = {k: v for k, v in m.get("ingest", {}).items() if not k.startswith("m::")}


# ---- LiveCodeBench, evalplus ------------------------------------------------------------------------
LCB = "livecodebench/ref/Scenario.codegeneration_3_0.2_eval_all.json"
LCB_EXEC = "livecodebench/ref/Scenario.codeexecution_1_0.2_eval_all.json"
EP = "evalplus/tiny-ref_temp_0.8.eval_results.json"
EP_OLD = "evalplus/v0.2.0/eval_results.json"


def _json_file(rel: str) -> st.SearchStrategy[bytes]:
    raw = (FIX / rel).read_bytes()
    return mutated_json(json.loads(raw)).map(dumps) | mutated_bytes(raw, text=True)


@given(st.sampled_from([LCB, LCB_EXEC]).flatmap(lambda r: st.tuples(st.just(r), _json_file(r))))
def test_livecodebench(work: Path, case: tuple[str, bytes]) -> None:
    rel, data = case
    (work / rel).write_bytes(data)
    res = expect(lambda: livecodebench.read([work / rel], "m"), QuantfidError)
    if res is not None:
        check_result(res)


@given(st.sampled_from([EP, EP_OLD]).flatmap(lambda r: st.tuples(st.just(r), _json_file(r))))
def test_evalplus(work: Path, case: tuple[str, bytes]) -> None:
    rel, data = case
    (work / rel).write_bytes(data)
    res = expect(lambda: evalplus.read([work / rel], "m"), QuantfidError)
    if res is not None:
        check_result(res)


# ---- llama-perplexity logs ------------------------------------------------------------------------
LOGS = ("llamacpp/kld_q4.log", "llamacpp/kld_tiny_q4.log", "llamacpp/winogrande_ref.log",
        "llamacpp/hellaswag_ref.log")


def _log_mutations(rel: str) -> st.SearchStrategy[bytes]:
    raw = (FIX / rel).read_bytes()
    lines = raw.split(b"\n")
    drop_lines = st.lists(st.integers(0, len(lines) - 1), min_size=1, max_size=4).map(
        lambda ks: b"\n".join(x for i, x in enumerate(lines) if i not in set(ks)))
    return mutated_bytes(raw, text=True) | drop_lines


@given(st.sampled_from(LOGS).flatmap(lambda r: st.tuples(st.just(r), _log_mutations(r))),
       st.sampled_from([None, 512, 3, 100000]))
def test_llamacpp_logs(work: Path, case: tuple[str, bytes], ctx: int | None) -> None:
    rel, data = case
    (work / rel).write_bytes(data)
    res = expect(lambda: llamacpp.read([work / rel], "m", reference="ref", corpus="wiki",
                                       ctx=ctx), QuantfidError)
    if res is not None:
        check_result(res, fraction_scores=False)


# ---- per-prompt tables ----------------------------------------------------------------------------
def _table_mutations() -> st.SearchStrategy[tuple[str, str | None, bytes]]:
    csv_raw = (FIX / "table/results.csv").read_bytes()
    tsv_raw = csv_raw.replace(b",", b"\t")
    jl = _lines(FIX / "table/scores.jsonl")
    maps = st.sampled_from(["prompt_id=item,passed=ok,benchmark=task",
                            "prompt_id=item,score=pscore,benchmark=task"])
    return (st.tuples(st.just("t.csv"), maps, mutated_bytes(csv_raw, text=True))
            | st.tuples(st.just("t.tsv"), maps, mutated_bytes(tsv_raw, text=True))
            | st.tuples(st.just("t.jsonl"), st.just(None), jsonl_mutations(jl)))


@given(_table_mutations())
def test_tables(work: Path, case: tuple[str, str | None, bytes]) -> None:
    name, mapping, data = case
    p = work / "table" / name
    p.write_bytes(data)
    res = expect(lambda: table.read([p], "ref", mapping=table.parse_map(mapping),
                                    benchmark=None if mapping and "task" in mapping else "b"),
                 QuantfidError)
    if res is not None:
        check_result(res)
