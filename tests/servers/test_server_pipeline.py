"""``measure``, ``bench`` and a two-quant study through llama-cpp-python's real server: the
server is one more backend of the same pipeline, checked against the in-process llama.cpp
backend on the same GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantfid import cli
from quantfid.bench.run import run_tasks
from quantfid.measure import measure
from quantfid.store.workspace import Workspace

pytestmark = pytest.mark.slow
CTX = 64


def test_measure_through_the_server(llama_server: str, gguf: Path, tmp_path: Path) -> None:
    (srv,) = measure(None, [llama_server], "prose", CTX, chunks=1, names=["srv"],
                     workspace=tmp_path / "ws", progress=False, n_boot=50,
                     options={"top_k": 20, "concurrency": 1})
    # the same stored reference rows, the same file run in-process by llama.cpp
    (store,) = [m.parent for m in (tmp_path / "ws" / "arrays").rglob("meta.json")]
    (local,) = measure(str(store), [str(gguf)], None, None, names=["local"],
                       backend="llamacpp", workspace=tmp_path / "ws2", progress=False, n_boot=50)
    s, exact = srv.stats, local.stats["kld_mean"]
    assert s["n_tokens"] == local.stats["n_tokens"] == CTX - 1 - CTX // 2
    # the same file in the same runtime: the top-20 estimate is close, the bound below it
    assert s["kld_bound_low"] <= exact * 1.001
    assert s["kld_mean"] == pytest.approx(exact, rel=0.25)
    # llama-cpp-python's server returns a target's log-prob only among its top K: no
    # perplexity for it rather than one biased by the missing tokens; the local run has one
    assert s["ppl_q"] is None and s["ppl_ref"] is None and local.stats["ppl_q"] > 1
    rec = Workspace(tmp_path / "ws").model("srv")
    assert rec.format == "server" and rec.extra["backend"] == "http"


def test_bench_through_the_server(llama_server: str, gguf: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    run_tasks(ws, "embedded", reference=True, tasks="cloze", limit=3, progress=False)
    (srv,) = run_tasks(ws, llama_server, name="srv", tasks="cloze", limit=3, progress=False,
                       options={"concurrency": 1})
    (local,) = run_tasks(ws, str(gguf), name="local", backend="llamacpp", tasks="cloze",
                         limit=3, progress=False)
    assert srv["n"] == local["n"] == 3 and srv["acc"] == local["acc"]
    assert srv["kld_mean"] == pytest.approx(local["kld_mean"], rel=0.3)
    outs = {(o.model, o.prompt_id): o.passed for o in Workspace(ws).outcomes()
            if o.benchmark == "cloze"}
    assert {p: v for (m, p), v in outs.items() if m == "srv"} == {
        p: v for (m, p), v in outs.items() if m == "local"}


def test_two_quant_study_through_the_server(llama_server: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text(f"""
[quants]
recipes = ["Q8_0"]
[[models]]
spec = "{llama_server}"
name = "served"
top_k = 20
concurrency = 1
[measure]
corpora = ["prose"]
contexts = [{CTX}]
chunks = [1]
noise_floor = false
[[benchmarks]]
task = "cloze"
limit = 3
[analysis]
n_boot = 100
""")
    out = tmp_path / "ws"
    assert cli.main(["study", str(cfg), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    ws = Workspace(out)
    assert {m.id for m in ws.models("quant")} == {"Q8_0", "served"}
    served = [r for r in ws.rows("fidelity") if r["model"] == "served"]
    assert len(served) == 1 and served[0]["kld_bound_low"] <= served[0]["kld_mean"]
    summary = json.loads((out / "summary.json").read_text())
    assert "served" in json.dumps(summary["cohort"])
