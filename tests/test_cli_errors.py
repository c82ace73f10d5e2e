"""Issue 13's numbered cases: bad input gets exit 2 and one line naming the problem, and
the workspace is byte-for-byte unchanged (or, for 14, exit 0 with the documented meaning).

Cases 18, 20 and 22 are the pipeline's (bench, models, measure); 2-3 are checked on
``check_gguf`` here and wired into model loading by ``models.parse_spec``.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import quantfid
from quantfid import atomic, embedded
from quantfid.cli import main
from quantfid.errors import FormatError
from quantfid.gguf_check import check_gguf
from quantfid.store.workspace import Workspace

FIX = Path(__file__).parent / "ingest" / "fixtures"
DATE = "2025-06-01T10-00-00.123456"
ARC_REF = FIX / f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl"
ARC_Q4 = FIX / f"lm_eval/v0.4.9/q4/made-up__q4/samples_arc_mini_{DATE}.jsonl"


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), directories included as b''."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def one_error(err: str, *needles: str) -> None:
    """stderr is one 'quantfid: error:' line holding every needle; no traceback."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("quantfid: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@contextlib.contextmanager
def read_only(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make writes under ``root`` fail with EROFS, as on a read-only mount (tests run as
    root, so permission bits cannot)."""
    top = str(root.resolve())

    def under(p: object) -> bool:
        try:
            return os.path.abspath(os.fsdecode(p)).startswith(top)  # type: ignore[arg-type]
        except TypeError:
            return False

    def deny(p: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(p))  # type: ignore[arg-type]

    def guard(real, write_test):  # type: ignore[no-untyped-def]
        def wrapped(path, *a, **k):  # type: ignore[no-untyped-def]
            if under(path) and write_test(*a, **k):
                deny(path)
            return real(path, *a, **k)
        return wrapped

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    b_open = guard(builtins.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))
    with monkeypatch.context() as m:
        m.setattr(builtins, "open", b_open)
        m.setattr(io, "open", b_open)
        m.setattr(os, "open", guard(os.open, lambda flags, *a, **k: bool(flags & writes)))
        for name in ("mkdir", "unlink", "rmdir"):
            m.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
        for name in ("replace", "rename"):
            m.setattr(os, name, guard(getattr(os, name), lambda *a, **k: True))
        yield


@pytest.fixture
def ref_ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A workspace holding the reference's arc_mini outcomes (lm-eval)."""
    w = tmp_path / "ws"
    assert run(capsys, "ingest", "lm-eval", ARC_REF, "--model", "ref", "--reference",
               "-w", w)[0] == 0
    return w


@pytest.fixture(scope="module")
def cohort_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from quantfid.analysis.synthetic import make_cohort

    ws = Workspace(tmp_path_factory.mktemp("cohort") / "ws")
    make_cohort(np.random.default_rng(5), kind="volume", n_quants=6, n_prompts=60).write(ws)
    return ws.path


# ---- tracebacks -> exit 2 -------------------------------------------------------------
def test_1_empty_npy_to_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "ref.npy"
    empty.write_bytes(b"")
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, "stats", "--ref", empty, "--quant", empty)
    assert rc == 2
    one_error(err, "--ref", "ref.npy", "not a .npy file")
    assert snapshot(tmp_path) == before


def test_2_3_truncated_gguf_is_a_format_error(tmp_path: Path) -> None:
    src = embedded.gguf_path()
    with open(src, "rb") as fh:
        head = fh.read(200_000)  # inside the tokenizer's metadata
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(head)
    with pytest.raises(FormatError, match=r"cut\.gguf: truncated or corrupt GGUF: array "
                                          r"'tokenizer\.ggml\.tokens'"):
        check_gguf(cut)
    check_gguf(src)  # the real file passes
    for flag in ("--reference", "--quant"):  # through the CLI: exit 2, one line, nothing written
        ws = tmp_path / f"ws{flag}"
        args = ["measure", "--reference", str(cut), "--quant", "Q8_0"] if flag == "--reference" \
            else ["measure", "--quant", str(cut)]
        before = snapshot(tmp_path)
        assert main([*args, "--corpus", "prose", "--ctx", "64", "--workspace", str(ws)]) == 2
        assert snapshot(tmp_path) == before and not ws.exists()


def test_18_bench_limit_zero_leaves_nothing(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    ws = tmp_path / "new"
    rc, _, err = run(capsys, "bench", "--task", "cloze", "--limit", "0", "--workspace", ws)
    assert rc == 2 and not ws.exists()
    one_error(err, "--limit", "positive integer")


def test_20_unknown_recipe_and_truncated_gguf_say_what_they_are(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "measure", "--quant", "Q9_Z", "--ctx", "64")
    assert rc == 2
    one_error(err, "'Q9_Z'", "recipe")
    assert "hub ids need network" not in err
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(embedded.gguf_path().read_bytes()[:50_000])
    rc, _, err = run(capsys, "measure", "--quant", cut, "--ctx", "64")
    assert rc == 2
    one_error(err, "cut.gguf", "GGUF")
    assert "hub ids need network" not in err


def test_22_measure_checks_arguments_before_loading(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import quantfid.backends.hf as hf

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(hf, "load_hf", boom)
    for bad in (["--ctx", "0"], ["--ctx", "2"], ["--chunks", "0"], ["--n-boot", "-1"]):
        rc, _, err = run(capsys, "measure", "--quant", "Q8_0", *bad)
        assert rc == 2, bad
        assert err.count("\n") == 1 and "error" in err


def test_4_ingest_into_read_only_workspace(ref_ws: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(ref_ws)
    with read_only(ref_ws, monkeypatch):
        rc, _, err = run(capsys, "ingest", "lm-eval", ARC_Q4, "--model", "q4", "-w", ref_ws)
    assert rc == 2
    one_error(err, str(ref_ws), "Read-only file system")
    assert snapshot(ref_ws) == before


def test_5_report_on_read_only_workspace(cohort_ws: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(cohort_ws)
    with read_only(cohort_ws, monkeypatch):
        rc, _, err = run(capsys, "report", cohort_ws, "--n-boot", "20")
    assert rc == 2
    one_error(err, str(cohort_ws), "Read-only file system")
    assert snapshot(cohort_ws) == before


def test_6_report_out_onto_a_file(cohort_ws: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "report.txt"
    target.write_text("mine")
    before, ws_before = snapshot(tmp_path), snapshot(cohort_ws)
    rc, _, err = run(capsys, "report", cohort_ws, "--out", target, "--n-boot", "20")
    assert rc == 2
    one_error(err, "--out", "report.txt", "is not a directory")
    assert snapshot(tmp_path) == before and snapshot(cohort_ws) == ws_before
    out = tmp_path / "new" / "report"  # a good --out: published whole, no staging left
    assert run(capsys, "report", cohort_ws, "--out", out, "--n-boot", "20")[0] == 0
    names = {p.name for p in out.rglob("*")}
    assert {"report.html", "report.md", "summary.json", "plots"} <= names
    assert not any(p.name.startswith(".quantfid-report-") for p in tmp_path.rglob("*"))


def test_7_closed_stdout_exits_quietly(ref_ws: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(quantfid.__file__).parents[1])}
    before = snapshot(ref_ws)
    p = subprocess.Popen([sys.executable, "-m", "quantfid", "outcomes", str(ref_ws)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # as `| head -1` does once it has its line
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 2
    assert err == ""  # no traceback, no 'Exception ignored' from the final flush
    assert snapshot(ref_ws) == before


# ---- bad values refused -----------------------------------------------------------------
def _arc_with(tmp_path: Path, value: str) -> Path:
    lines = ARC_Q4.read_text().splitlines()
    lines[2] = lines[2].replace('"acc": 1.0', f'"acc": {value}').replace(
        '"acc": 0.0', f'"acc": {value}')
    assert value in lines[2]
    p = tmp_path / "in" / ARC_Q4.name
    p.parent.mkdir()
    p.write_text("\n".join(lines) + "\n")
    return p


@pytest.mark.parametrize(("case", "value", "what"), [(8, "NaN", "finite"), (9, "5.0", "[0, 1]")])
def test_8_9_bad_lm_eval_scores(case: int, value: str, what: str, ref_ws: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    bad = _arc_with(tmp_path, value)
    before = snapshot(ref_ws)
    rc, _, err = run(capsys, "ingest", "lm-eval", bad, "--model", "q4", "-w", ref_ws)
    assert rc == 2
    one_error(err, f"{bad.name}:3: acc", what, value.lower())
    assert snapshot(ref_ws) == before


@pytest.mark.parametrize("score", ["nan", "inf", "-7"])
def test_10_bad_table_scores(score: str, ref_ws: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    t = tmp_path / "t.csv"
    t.write_text(f"prompt_id,score\n0,1.0\n1,{score}\n")
    before = snapshot(ref_ws)
    rc, _, err = run(capsys, "ingest", "table", t, "--benchmark", "b", "--model", "q4",
                     "-w", ref_ws)
    assert rc == 2
    one_error(err, "t.csv:3: score", score)
    assert snapshot(ref_ws) == before


def test_11_negative_ctx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "ws"
    rc, _, err = run(capsys, "ingest", "llamacpp", FIX / "llamacpp/kld_q4.log", "--model",
                     "q4", "--corpus", "wiki", "--ctx", "-3", "-w", w)
    assert rc == 2
    one_error(err, "--ctx", "positive integer", "-3")
    assert not w.exists()


def test_12_negative_n_boot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "a.npy"
    np.save(a, np.zeros((4, 3), np.float32))
    before = snapshot(tmp_path)
    rc, _, err = run(capsys, "stats", "--ref", a, "--quant", a, "--n-boot", "-5")
    assert rc == 2
    one_error(err, "--n-boot", ">= 0", "-5")
    assert snapshot(tmp_path) == before


def test_13_negative_band(cohort_ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(cohort_ws)
    rc, _, err = run(capsys, "analyze", cohort_ws, "--band", "-3")
    assert rc == 2
    one_error(err, "--band", "(0, 1]", "-3")
    assert snapshot(cohort_ws) == before


def test_14_k_zero_is_automatic(cohort_ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, auto, _ = run(capsys, "analyze", cohort_ws, "--n-boot", "30", "--json")
    rc0, zero, _ = run(capsys, "analyze", cohort_ws, "--n-boot", "30", "--k", "0", "--json")
    assert rc == rc0 == 0
    assert json.loads(zero) == json.loads(auto)
    zones = json.loads(zero)["silent_zone"]
    assert any(z["lowest_k"] for z in zones.values())  # not an empty zone
    assert run(capsys, "analyze", cohort_ws, "--k", "-1")[0] == 2


def test_15_cut_llamacpp_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (FIX / "llamacpp/kld_q4.log").read_text(encoding="utf-8")
    cut = tmp_path / "cut.log"
    cut.write_text(text[:len(text) // 2], encoding="utf-8")
    w = tmp_path / "ws"
    rc, _, err = run(capsys, "ingest", "llamacpp", cut, "--model", "q4", "--corpus", "wiki",
                     "-w", w)
    assert rc == 2
    one_error(err, "cut.log", "cut short")
    assert not w.exists()


# ---- a failed command changes nothing -----------------------------------------------------
def _q4_missing_doc(tmp_path: Path, doc: int = 3) -> Path:
    p = tmp_path / "q4" / ARC_Q4.name
    p.parent.mkdir()
    p.write_text("".join(x + "\n" for x in ARC_Q4.read_text().splitlines()
                         if json.loads(x)["doc_id"] != doc))
    return p


def test_16_failed_reference_ingest_registers_nothing(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    w = tmp_path / "ws"
    assert run(capsys, "ingest", "lm-eval", ARC_Q4, "--model", "q4", "-w", w)[0] == 0
    before = snapshot(w)
    short = FIX / "lm_eval/v0.4.9/ref/made-up__ref" / f"samples_arc_mini_{DATE}.jsonl"
    bad = tmp_path / "ref" / short.name
    bad.parent.mkdir()
    bad.write_text("".join(x + "\n" for x in short.read_text().splitlines()[:-1]))
    rc, _, err = run(capsys, "ingest", "lm-eval", bad, "--model", "badref", "--reference",
                     "-w", w)
    assert rc == 2 and "1 missing: 5" in err
    assert snapshot(w) == before
    assert Workspace(w).reference is None
    assert run(capsys, "ingest", "lm-eval", ARC_REF, "--model", "ref", "--reference",
               "-w", w)[0] == 0  # the real reference is still accepted
    assert Workspace(w).require_reference().id == "ref"


def test_17_failed_quant_ingest_leaves_no_entry(ref_ws: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(ref_ws)
    rc, _, err = run(capsys, "ingest", "lm-eval", _q4_missing_doc(tmp_path), "--model", "q4",
                     "-w", ref_ws)
    assert rc == 2 and "1 missing: 3" in err
    assert snapshot(ref_ws) == before
    assert "q4" not in Workspace(ref_ws).manifest["models"]


def test_19_intersect_keeps_other_models_results(ref_ws: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ref_parts = {p: b for p, b in snapshot(ref_ws).items() if p.startswith("tables/")}
    rc, _, err = run(capsys, "ingest", "lm-eval", _q4_missing_doc(tmp_path), "--model", "q4",
                     "-w", ref_ws, "--intersect")
    assert rc == 0 and "1 from ref" in err
    after = snapshot(ref_ws)
    assert all(after[p] == b for p, b in ref_parts.items())  # the reference's parts intact
    ws = Workspace(ref_ws)
    assert ws.intersections()["arc_mini"] == ["0", "1", "2", "4", "5"]
    seen = {(o.model, o.prompt_id) for o in ws.outcomes() if o.benchmark == "arc_mini"}
    assert ("ref", "3") not in seen and ("ref", "0") in seen and ("q4", "0") in seen
    raw = ws.read_table("outcomes", raw=True).to_pylist()
    assert any(r["model"] == "ref" and r["prompt_id"] == "3" for r in raw)
    assert ws.clear_intersection("arc_mini")  # reversible
    assert ("ref", "3") in {(o.model, o.prompt_id) for o in ws.outcomes()}


def test_21_directory_as_table(ref_ws: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "results"
    d.mkdir()
    before = snapshot(ref_ws)
    rc, _, err = run(capsys, "ingest", "table", d, "--benchmark", "b", "--model", "q4",
                     "-w", ref_ws)
    assert rc == 2
    one_error(err, "results", "is a directory")
    assert snapshot(ref_ws) == before


# ---- the CLI's mapping ------------------------------------------------------------------------
def test_disk_full_during_commit_changes_nothing(ref_ws: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(ref_ws)
    real, calls = atomic.stage_bytes, []

    def full(path: object, data: bytes) -> Path:
        calls.append(path)
        if len(calls) == 2:  # the first part is staged, the second finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", os.fspath(path))  # type: ignore[arg-type]
        return real(path, data)  # type: ignore[arg-type]

    monkeypatch.setattr(atomic, "stage_bytes", full)
    rc, out, err = run(capsys, "ingest", "lm-eval", ARC_Q4, "--model", "q4", "-w", ref_ws,
                       "--json")
    assert rc == 2
    one_error(err, "No space left on device", "free some")
    assert json.loads(out) == {"error": err.strip()[len("quantfid: error: "):], "exit": 2}
    assert snapshot(ref_ws) == before


def test_usage_error_is_one_line_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "analyze", "--band", "x", "--json")
    assert rc == 2
    one_error(err, "quantfid analyze: argument --band", "'x'", "--help")
    assert json.loads(out)["exit"] == 2


def test_sigterm_and_ctrl_c_exit_130(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import quantfid.commands.outcomes as cmd

    monkeypatch.setattr(cmd, "run", lambda args: os.kill(os.getpid(), signal.SIGTERM))
    rc, _, err = run(capsys, "outcomes", "w")
    assert rc == 130 and err.strip() == ("quantfid: terminated (SIGTERM); finished units are "
                                         "kept, re-run to resume")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd, "run", interrupted)
    assert run(capsys, "outcomes", "w")[0] == 130


def test_a_bug_still_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    import quantfid.commands.outcomes as cmd

    def bug(args: object) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cmd, "run", bug)
    with pytest.raises(ZeroDivisionError):  # python -m quantfid shows it and exits 1
        main(["outcomes", "w"])


def test_failed_ingest_into_new_directory_leaves_nothing(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for w in (tmp_path / "new", tmp_path / "empty"):
        rc, _, _ = run(capsys, "ingest", "table", FIX / "table/bad.csv", "--benchmark", "b",
                       "--model", "q4", "-w", w)
        assert rc == 2
    assert not (tmp_path / "new").exists() and not any((tmp_path / "empty").iterdir())
    shutil.rmtree(tmp_path / "empty")
