from __future__ import annotations

import json

from quantfid.cli import main
from quantfid.ingest.prompts import read_prompts
from quantfid.store.workspace import Workspace

DATE = "2025-06-01T10-00-00.123456"


def test_end_to_end_lm_eval_cohort(tmp_path, fix, capsys):
    w = str(tmp_path / "ws")
    ref = str(fix / "lm_eval/v0.4.9/ref")
    assert main(["ingest", "lm-eval", ref, "--model", "ref", "--reference", "--workspace", w]) == 0
    out = capsys.readouterr()
    assert "gsm_mini/strict-match" in out.out and "new" in out.out
    assert "wiki_mini" in out.err  # skipped task warned on stderr
    assert main(["ingest", "lm-eval", str(fix / "lm_eval/v0.4.9/q4"), "--model", "q4",
                 "--workspace", w, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {b["benchmark"]: b for b in doc["benchmarks"]}
    assert rows["arc_mini"]["n"] == 6 and rows["arc_mini"]["accuracy"] == 0.5
    assert rows["arc_mini:acc_norm"]["accuracy"] == 4 / 6

    ws = Workspace(w)
    assert ws.reference is not None and ws.reference.id == "ref"
    assert ws.model("q4").role == "quant" and ws.model("q4").format == "external"
    outs = ws.outcomes()
    acc = {(o.model, o.prompt_id): o.passed for o in outs if o.benchmark == "arc_mini"}
    flips = {pid for (m, pid), ok in acc.items() if m == "q4" and ok != acc[("ref", pid)]}
    assert flips == {"2", "3"}
    pts = read_prompts(ws, model="ref", benchmark="arc_mini")
    assert len(pts) == 6 and pts[0].continuations

    # re-ingesting the same files is a no-op: parts are not rewritten
    part = next(p for p in ws.parts("outcomes") if p.name == "ingest-lm-eval-q4-arc_mini.parquet")
    mtime = part.stat().st_mtime_ns
    assert main(["ingest", "lm-eval", str(fix / "lm_eval/v0.4.9/q4"), "--model", "q4",
                 "--workspace", w, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {b["status"] for b in doc["benchmarks"]} == {"unchanged"}
    assert part.stat().st_mtime_ns == mtime


def test_changed_file_replaces_part(tmp_path, fix, copy_fixture, capsys):
    w = str(tmp_path / "ws")
    p = copy_fixture(f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl")
    assert main(["ingest", "lm-eval", str(p), "--model", "ref", "--reference", "-w", w]) == 0
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    rows[0]["acc"] = 0.0
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    capsys.readouterr()
    assert main(["ingest", "lm-eval", str(p), "--model", "ref", "-w", w, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {b["benchmark"]: b["status"] for b in doc["benchmarks"]}["arc_mini"] == "replaced"
    got = {o.prompt_id: o.passed for o in Workspace(w).outcomes() if o.benchmark == "arc_mini"}
    assert got["0"] is False and len(got) == 6


def test_second_reference_and_bad_file_exit_2(tmp_path, fix, capsys):
    w = str(tmp_path / "ws")
    lcb = fix / "livecodebench"
    assert main(["ingest", "livecodebench", str(lcb / "ref"), "--model", "ref", "--reference",
                 "-w", w]) == 0
    assert main(["ingest", "livecodebench", str(lcb / "q4"), "--model", "q4", "--reference",
                 "-w", w]) == 2
    assert "already has reference 'ref'" in capsys.readouterr().err
    bad = tmp_path / "x_eval_all.json"
    bad.write_text('[{"question_id": "a",\n "graded_list": [true, "no"]}]')
    assert main(["ingest", "livecodebench", str(bad), "--model", "q4", "-w", w]) == 2
    err = capsys.readouterr().err
    assert "quantfid: error:" in err and "x_eval_all.json[0]: graded_list of a" in err


def test_llamacpp_fidelity_and_winogrande(tmp_path, fix, capsys):
    w = str(tmp_path / "ws")
    assert main(["ingest", "llamacpp", str(fix / "llamacpp/winogrande_ref.log"), "--model", "ref",
                 "--reference", "-w", w]) == 0
    assert main(["ingest", "llamacpp", str(fix / "llamacpp/kld_q4.log"), "--model", "q4",
                 "--corpus", "wiki", "-w", w]) == 0
    assert "KLD mean 0.012012" in capsys.readouterr().out
    (row,) = Workspace(w).rows("fidelity")
    assert (row["model"], row["reference"], row["ctx"], row["kld_mean"]) == ("q4", "ref", 512, 0.012012)


def test_table_and_evalplus(tmp_path, fix, capsys):
    w = str(tmp_path / "ws")
    m = "prompt_id=item,passed=ok,benchmark=task"
    assert main(["ingest", "table", str(fix / "table/results.csv"), "--map", m, "--model", "ref",
                 "--reference", "-w", w]) == 0
    assert main(["ingest", "table", str(fix / "table/results.csv"), "--map", m, "--model", "q4",
                 "-w", w]) == 0
    capsys.readouterr()
    assert main(["ingest", "evalplus", str(fix / "evalplus/tiny-ref_temp_0.8.eval_results.json"),
                 "--model", "ref", "-w", w, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {b["benchmark"]: b["n"] for b in doc["benchmarks"]} == {"humaneval": 3, "humaneval+": 3}
    ws = Workspace(w)
    assert sorted({o.benchmark for o in ws.outcomes()}) == ["humaneval", "humaneval+", "quiz"]
    assert main(["ingest", "table", str(fix / "table/bad.csv"), "--benchmark", "b", "--model",
                 "q4", "-w", w]) == 2
    assert "bad.csv:3: passed value 'maybe'" in capsys.readouterr().err


def test_intersect_warns_on_stderr(tmp_path, fix, copy_fixture, capsys):
    w = str(tmp_path / "ws")
    ref = fix / f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl"
    assert main(["ingest", "lm-eval", str(ref), "--model", "ref", "--reference", "-w", w]) == 0
    p = copy_fixture(f"lm_eval/v0.4.9/q4/made-up__q4/samples_arc_mini_{DATE}.jsonl")
    rows = [json.loads(x) for x in p.read_text().splitlines()]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows if r["doc_id"] != 3))
    capsys.readouterr()
    assert main(["ingest", "lm-eval", str(p), "--model", "q4", "-w", w]) == 2
    assert "1 missing: 3" in capsys.readouterr().err
    assert main(["ingest", "lm-eval", str(p), "--model", "q4", "-w", w, "--intersect"]) == 0
    err = capsys.readouterr().err
    assert "--intersect on arc_mini: dropped 0 prompt(s) from q4, 1 from ref" in err
