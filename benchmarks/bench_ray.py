"""Wall time of ``quantfid study --quick`` with the Ray executor against the local executor,
measured in the same run, and whether their outputs are identical.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_ray.py [--repeats 1] [--num-cpus N]
        [--keep DIR] [--json]

Each run is a fresh ``python -m quantfid study --quick`` subprocess into a new workspace
(both pay the interpreter, imports and model loading). The Ray runs start their own
one-machine cluster (``--executor ray`` without ``--address``): Ray's start-up, its workers'
start-up and their loading of the reference are inside the measured time. Local and Ray runs
alternate (local first, then Ray first, ...), so both see the same machine load; the ratio is
of the medians.

``--num-cpus``: Ray's ``[executor] num_cpus`` per unit, also each worker's torch threads;
default: the torch threads a local run uses here, which gives the local run's bits (on a
2-core machine that is one worker of 2 threads). Identical: every table part and array file
byte for byte, and summary.json apart from its provenance (timings, paths).

Where the Ray run's time goes: the driver's stages (``setup``: loading the reference and
planning; ``ray``: starting the cluster until the first worker answered, plus stopping it)
and the sum over workers of their unit stages (model loading under ``reference`` and
``quantize``), from each run's summary.json.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_study(out: Path, config: Path | None, ray: bool) -> float:
    cmd = [sys.executable, "-m", "quantfid", "study", "--quick", "--out", str(out)]
    if config is not None:
        cmd.insert(4, str(config))
    if ray:
        cmd += ["--executor", "ray"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (out.parent / f"{out.name}.log").write_text(p.stderr)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return wall


def differences(a: Path, b: Path) -> list[str]:
    def files(w: Path) -> dict[str, Path]:
        return {p.relative_to(w).as_posix(): p for d in ("tables", "arrays")
                for p in (w / d).rglob("*") if p.is_file()}

    fa, fb = files(a), files(b)
    out = sorted(set(fa) ^ set(fb))
    out += [k for k in sorted(set(fa) & set(fb)) if not filecmp.cmp(fa[k], fb[k], shallow=False)]
    sa, sb = (json.loads((w / "summary.json").read_text()) for w in (a, b))
    sa.pop("provenance")
    sb.pop("provenance")
    return out + (["summary.json"] if sa != sb else [])


def timings(ws: Path) -> dict[str, float]:
    prov = json.loads((ws / "summary.json").read_text())["provenance"]
    return {k: round(v, 1) for k, v in sorted(prov["timings_s"].items()) if v >= 0.05}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--num-cpus", type=float, default=0.0,
                    help="Ray num_cpus per unit (0: the local run's torch threads)")
    ap.add_argument("--keep", type=Path, help="keep the workspaces in this directory")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    n_cpus = args.num_cpus or float(torch.get_num_threads())
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-ray-"))
    root.mkdir(parents=True, exist_ok=True)
    config = root / "ray.toml"
    from quantfid import config as qconfig

    cfg = qconfig.preset("quick")
    text = qconfig.to_toml(cfg).replace(f"num_cpus = {cfg.executor.num_cpus!r}",
                                        f"num_cpus = {n_cpus!r}")
    config.write_text(text)
    local_t, ray_t = [], []
    for i in range(args.repeats):  # alternated, the order swapped every repeat
        for ray in (False, True) if i % 2 == 0 else (True, False):
            t = run_study(root / f"{'ray' if ray else 'local'}-{i}", config if ray else None, ray)
            (ray_t if ray else local_t).append(t)
    diff = differences(root / "local-0", root / "ray-0")
    res = {"cpu": _cpu(), "threads_local": torch.get_num_threads(), "ray_num_cpus": n_cpus,
           "local_s": [round(t, 1) for t in local_t], "ray_s": [round(t, 1) for t in ray_t],
           "ratio_ray_over_local": round(statistics.median(ray_t) / statistics.median(local_t), 3),
           "identical": not diff, "differences": diff[:20],
           "local_stages_s": timings(root / "local-0"), "ray_stages_s": timings(root / "ray-0"),
           "workers": _workers(root / "ray-0.log")}
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"cpu: {res['cpu']}; local torch threads {res['threads_local']}, "
              f"ray num_cpus per unit {n_cpus:g} ({res['workers']})")
        print(f"local  wall s: {res['local_s']}  stages: {res['local_stages_s']}")
        print(f"ray    wall s: {res['ray_s']}  stages: {res['ray_stages_s']}")
        print(f"ray / local (medians): {res['ratio_ray_over_local']:.3f}; outputs identical: "
              f"{res['identical']}" + (f" (differ: {diff[:5]})" if diff else ""))
    if args.keep is None:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs"


def _workers(log: Path) -> str:
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines():
        if line.startswith("ray: "):
            return line[len("ray: "):]
    return "?"


if __name__ == "__main__":
    main()
