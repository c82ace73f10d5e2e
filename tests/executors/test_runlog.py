"""Progress on the driver: units done / running / failed per stage, an ETA, the stage trace;
and the study command's executor flags."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from quantfid import cli
from quantfid.executors.log import TRACE_ENV, RunLog, Timings


def unit(model: str, stage: str, tokens: int) -> SimpleNamespace:
    return SimpleNamespace(model=SimpleNamespace(id=model), stage=stage, forward_tokens=tokens)


def test_counts_eta_and_one_line_per_unit_for_parallel_runs(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("quantfid.executors.log.time.perf_counter", lambda: now[0])
    a, b, c = unit("Q8_0", "measure", 100), unit("Q4_0", "measure", 100), unit("Q4_0", "bench", 200)
    out = io.StringIO()
    log = RunLog([a, b, c], progress=False, log=out)
    log.per_unit = True
    assert log.eta() is None
    log.unit_start(a)
    log.unit_start(b)
    assert (log.running, log.failed) == (2, 0)
    log.unit_failed(b, "worker w1 lost")
    assert (log.running, log.failed) == (1, 1)
    now[0] = 110.0
    log.unit_done(a, 3.0, "w2")  # 100 of 400 tokens in 10 s: 300 left, 30 s
    assert log.eta() == pytest.approx(30.0)
    log.unit_start(b)
    log.unit_done(b, 2.0, "w3")
    log.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "unit lost: Q4_0 measure: worker w1 lost"
    assert lines[1] == "[1/3] Q8_0 measure 3.0s on w2 (running 0, failed 1, ETA 0.5 min)"
    assert lines[2] == "[2/3] Q4_0 measure 2.0s on w3 (running 0, failed 1, ETA 0.2 min)"
    assert log.units_run == 2 and log.tokens_left == 200


def test_the_stage_trace_names_process_and_stage(tmp_path, monkeypatch):
    trace = tmp_path / "trace"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    t = Timings()
    with t.stage("measure"), t.stage("bench"):
        pass
    import os

    assert trace.read_text() == f"{os.getpid()} measure\n{os.getpid()} bench\n"
    assert set(t.seconds) == {"measure", "bench"}


def test_study_flags_for_the_executor(capsys, tmp_path):
    from quantfid import config
    from quantfid.commands.study import _with_executor

    cfg = _with_executor(config.preset("quick"), "ray", "127.0.0.1:6379")
    assert (cfg.executor.kind, cfg.executor.address) == ("ray", "127.0.0.1:6379")
    assert _with_executor(cfg, "local", None).executor.kind == "local"
    assert cli.main(["study", "--address", "10.0.0.1:6379", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["quantfid: error: --address names a Ray cluster: give --executor ray too"]
    assert not (tmp_path / "w").exists()
