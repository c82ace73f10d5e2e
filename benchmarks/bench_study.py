"""Per-stage wall time and tokens/s of the default study on a sample of its quants, with the
library's code (after: float32 linear layers through oneDNN, ``quantfid.backends.cpu_gemm``)
and with torch's default float32 product (before: MKL), measured in the same run, with the
projected full-study time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_study.py \
        [--quants Q8_0,Q4_K_M,rtn-w4g128-sym] [--repeats 1] [--json]

The plan is the default study's (``quantfid.config.preset("default")``: its corpora, contexts,
windows, benchmarks and numerics), cut to the sampled quants. Per repeat, each variant runs
every unit of that plan (the reference's, the noise floor's, the sampled quants') into its
own empty workspace, the two variants alternating (the order swapped every repeat) so both
see the same machine load. Both variants use the same code otherwise (the LM head once per
chunk of rows packed across a batch, per-prompt fidelity from the benchmark's own forward).

Stages: ``reference`` (the reference's units), ``noise`` (the noise floor's), ``quantize``
(building each quant), ``measure`` (its corpus units), ``bench`` (its benchmark units,
outcomes and per-prompt fidelity). Tokens/s: the stage's forward tokens over its wall time
(medians over repeats). The projection scales the per-quant stages to the default study's
quant count and adds the reference and noise stages. Both variants' per-prompt results are
compared (max relative difference of the stored per-prompt KLDs and outcome scores, and of
every corpus KLD summary). Quote ``lscpu``'s model name with the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

PER_QUANT = ("quantize", "measure", "bench")


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    """``before``: every ``OneDNNLinear`` computes as ``torch.nn.Linear`` does."""
    from quantfid.backends.cpu_gemm import OneDNNLinear

    current = OneDNNLinear.forward
    if name == "before":
        OneDNNLinear.forward = torch.nn.Linear.forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        OneDNNLinear.forward = current  # type: ignore[method-assign]


# ---- runs ------------------------------------------------------------------------------------
def run_units(units: Sequence[Any], pool: Any, ws_path: Path) -> dict[str, float]:
    from quantfid.executors.local import LocalExecutor
    from quantfid.executors.log import RunLog, Timings
    from quantfid.store.workspace import Workspace

    t = Timings()
    with open(os.devnull, "w") as quiet:
        log = RunLog(units, progress=False, log=quiet, timings=t)
        try:
            LocalExecutor().run(list(units), pool, Workspace(ws_path), log)
        finally:
            log.close()
    return dict(t.seconds)


def compare(a: Path, b: Path) -> dict[str, float]:
    """Max relative difference, over rows both workspaces hold, of per-prompt and corpus KLD
    means; how many outcome scores differ, of how many."""
    from quantfid.store.workspace import Workspace

    def rows(w: Path, table: str, keys: tuple[str, ...], col: str) -> dict[tuple[Any, ...], Any]:
        return {tuple(r[k] for k in keys): r[col] for r in Workspace(w).read_table(table)
                .to_pylist() if r[col] is not None}

    out: dict[str, float] = {}
    for table, keys in (("prompt_fidelity", ("model", "benchmark", "prompt_id")),
                        ("fidelity", ("model", "corpus", "ctx"))):
        ra, rb = rows(a, table, keys, "kld_mean"), rows(b, table, keys, "kld_mean")
        out[f"{table}.kld_mean"] = max((abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12)
                                        for k in set(ra) & set(rb)), default=0.0)
    keys = ("model", "benchmark", "prompt_id")
    oa, ob = rows(a, "outcomes", keys, "score"), rows(b, "outcomes", keys, "score")
    both = set(oa) & set(ob)
    out["outcomes_changed"] = sum(oa[k] != ob[k] for k in both)
    out["outcomes_compared"] = len(both)
    return out


def run_variant(name: str, plan_units: Sequence[Any], pool: Any, ws: Path) -> dict[str, float]:
    """Seconds per stage of every unit of the plan, in ``name``'s variant."""
    order = ("reference", "noise", "measure", "bench")
    groups = {"reference": [u for u in plan_units if u.model.spec.role == "reference"]}
    rest = [u for u in plan_units if u.model.spec.role != "reference"]
    groups.update({st: [u for u in rest if u.stage == st] for st in order[1:]})
    out: dict[str, float] = {}
    from quantfid.quantize import QuantCache

    pool.release()
    if getattr(pool, "_qcache", None) is not None:  # each variant quantizes from scratch
        pool._qcache = QuantCache()
    with variant(name):
        for st in order:
            for k, v in run_units(groups[st], pool, ws).items():
                key = "reference" if st == "reference" and k in ("measure", "bench") else k
                out[key] = out.get(key, 0.0) + v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quants", default="Q8_0,Q4_K_M,rtn-w4g128-sym")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import dataclasses

    from quantfid import config
    from quantfid.study import Study

    full = config.preset("default")
    sample = [q.strip() for q in args.quants.split(",") if q.strip()]
    cfg = dataclasses.replace(full, recipes=tuple(sample), models=())
    root = Path(tempfile.mkdtemp(prefix="bench-study-"))
    study = Study(cfg, root / "plan", log=sys.stderr, progress=False)
    pool = study._pool()
    units = study.plan(pool).units
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for i in range(args.repeats):
        for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
            for k, v in run_variant(name, units, pool, root / f"{name}-{i}").items():
                times[name].setdefault(k, []).append(v)
            print(f"done {name} repeat {i}", file=sys.stderr, flush=True)
    tokens: dict[str, int] = {}
    for u in units:
        st = "reference" if u.model.spec.role == "reference" else u.stage
        tokens[st] = tokens.get(st, 0) + u.forward_tokens
    n_full = len(full.recipes) + len(full.models)
    res = summarize(times, tokens, len(sample), n_full)
    res.update({"quants": sample, "cpu": _cpu(), "torch_threads": torch.get_num_threads(),
                "differences": compare(root / "before-0", root / "after-0")})
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=2) if args.json else render(res))


def summarize(times: dict[str, dict[str, list[float]]], tokens: dict[str, int],
              n_sample: int, n_full: int) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": {}, "projected_min": {}}
    for name, stages in times.items():
        med = {k: statistics.median(v) for k, v in stages.items()}
        per = {k: (s / n_sample if k in PER_QUANT else s) for k, s in med.items()}
        out["stages"][name] = {k: {"wall_s": round(s, 2), "per_quant_s": round(per[k], 2)
                                   if k in PER_QUANT else None,
                                   "tokens_per_s": round(tokens[k] / s, 1) if k in tokens else None}
                               for k, s in med.items()}
        proj = sum(per[k] * n_full if k in PER_QUANT else per[k] for k in per)
        out["projected_min"][name] = round(proj / 60, 1)
    b, a = (out["projected_min"][n] for n in ("before", "after"))
    out["study_speedup"] = round(b / a, 3) if a else None
    out["n_quants_full_study"] = n_full
    return out


def render(res: dict[str, Any]) -> str:
    lines = [f"cpu: {res['cpu']}, torch threads {res['torch_threads']}; sample {res['quants']}"]
    for name, stages in res["stages"].items():
        for k, v in stages.items():
            tps = "" if v["tokens_per_s"] is None else f", {v['tokens_per_s']} tok/s"
            per = "" if v["per_quant_s"] is None else f" ({v['per_quant_s']} s/quant)"
            lines.append(f"{name:>7} {k:<9} {v['wall_s']:8.2f} s{per}{tps}")
    lines.append(f"projected study speedup (before / after): {res['study_speedup']}x")
    lines.append("projected default study ({} quants): {}".format(
        res["n_quants_full_study"], ", ".join(f"{k} {v} min"
                                               for k, v in res["projected_min"].items())))
    lines.append(f"largest relative differences: {res['differences']}")
    return "\n".join(lines)


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
