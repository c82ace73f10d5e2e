"""The Ray executor on a real (loopback) Ray cluster, against the local executor's tiny study:
the same bits, a worker killed mid-unit, the driver killed and interrupted, then resumed by
the local executor, and workers refusing another quantfid."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest
from tests.fixtures.tiny_study import copy_workspace

from quantfid import cli

from .helpers import (
    assert_same_data,
    driver_when_a_worker_at,
    gone,
    leftovers,
    mtimes,
    run,
    study,
    worker_at,
)

pytestmark = pytest.mark.slow


def _workers(lines, driver):
    return {pid for pid, _ in lines if pid != driver}


def test_ray_equals_local_bitwise_even_when_a_worker_is_killed(ray_cluster, ray_config,
                                                                tiny_study, tmp_path):
    ws = tmp_path / "ws"
    environ = {**ray_cluster.env, "QUANTFID_RAY_COPY_STORES": "1"}  # stores via the object store
    r = run(study(ray_config, ws, "--address", ray_cluster.address), environ,
            tmp_path / "trace", when=worker_at("bench"))  # kill -9 a worker as it starts a unit
    assert r.returncode == 0, r.stderr
    assert r.signalled is not None and gone({r.signalled}, 10)
    assert "unit lost: " in r.stderr and "failed 1" in r.stderr  # counted on the driver
    assert "workspace through the object store" in r.stderr  # worker lines reach the driver
    assert_same_data(ws, tiny_study)  # every unit exactly once, computed to the same bits
    prov = json.loads((ws / "summary.json").read_text())["provenance"]
    assert prov["units"] == {"run": 7, "skipped": 0}
    assert {"ray", "reference", "quantize", "measure", "bench"} <= set(prov["timings_s"])
    assert leftovers(ws) == []


def test_interrupted_then_killed_driver_then_the_local_executor_finishes(
        ray_cluster, ray_config, tiny_study, tmp_path, capsys):
    ws = tmp_path / "ws"
    cmd = study(ray_config, ws, "--address", ray_cluster.address)
    # Ctrl-C the driver as soon as a worker starts a unit: workers end at once, exit 130
    a = run(cmd, ray_cluster.env, tmp_path / "trace-a", sig=signal.SIGINT,
            when=driver_when_a_worker_at("reference"))
    assert a.returncode == 130, a.stderr
    assert a.stderr.strip().splitlines()[-1] == (
        "quantfid: interrupted; finished units are kept, re-run to resume")
    assert gone(_workers(a.trace, a.signalled), 15)
    # kill -9 the next driver once a worker works on the noise floor (the reference store is in)
    b = run(cmd, ray_cluster.env, tmp_path / "trace-b", when=driver_when_a_worker_at("noise"))
    assert b.returncode == -signal.SIGKILL
    assert gone(_workers(b.trace, b.signalled), 60)  # Ray ends a dead driver's workers
    assert list((ws / "arrays" / "reference").glob("*/meta.json"))
    before = mtimes(ws)
    # the local executor finishes: it runs only what is missing and rewrites nothing
    capsys.readouterr()
    assert cli.main(["study", str(ray_config), "--out", str(ws), "--executor", "local"]) == 0
    capsys.readouterr()
    after = mtimes(ws)
    assert {k: after[k] for k in before} == before
    units = json.loads((ws / "summary.json").read_text())["provenance"]["units"]
    assert units["skipped"] >= 1 and units["run"] + units["skipped"] == 7
    assert_same_data(ws, tiny_study)
    assert leftovers(ws) == []


REFUSE = """
import sys
import quantfid.executors.ray as x
from quantfid.executors.fingerprint import Fingerprint
x.fingerprint = lambda: Fingerprint("0.0.0-other", "0" * 64)  # the driver runs another quantfid
from quantfid import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_workers_refuse_a_driver_running_another_quantfid(ray_cluster, ray_config, tiny_study,
                                                          tmp_path):
    ws = copy_workspace(tiny_study, tmp_path / "ws")
    victim = next((ws / "tables" / "fidelity").glob("Q4_0@*.parquet"))
    victim.unlink()
    before = mtimes(ws)
    p = subprocess.run([sys.executable, "-c", REFUSE, "study", str(ray_config), "--out", str(ws),
                        "--address", ray_cluster.address], env=ray_cluster.env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stderr
    err = [x for x in p.stderr.splitlines() if x.startswith("quantfid:")]
    assert len(err) == 1 and "install the same quantfid on every node" in err[0]
    assert "Traceback" not in p.stderr and p.stderr.count("quantfid 0.0.0-other") == 1  # once
    assert mtimes(ws) == before and not victim.exists()
    shutil.rmtree(ws)
