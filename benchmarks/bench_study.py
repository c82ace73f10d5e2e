"""Per-stage wall time and tokens/s of the default study on a sample of its quants, the
benchmark stage with the library's code (after: the LM head once per chunk of rows packed
across a batch) and with the code it replaced (before: the head per prompt and per choice),
measured in the same run, with the projected full-study time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_study.py \
        [--quants Q8_0,Q4_K_M,rtn-w4g128-sym] [--repeats 1] [--json]

The plan is the default study's (``quantfid.config.preset("default")``: its corpora, contexts,
windows, benchmarks and numerics), cut to the sampled quants. The reference's units run once
(timed as the ``reference`` stage). Then, per repeat, each variant runs every sampled quant's
units into its own copy of that workspace, the two variants alternating (the order swapped
every repeat) so both see the same machine load:

- ``before``: ``_before_score_batch`` below, the LM head per prompt and per choice (its
  V x H weight streams from memory for every call);
- ``after``: ``quantfid.backends.hf_loglik`` as it is.

Stages: ``quantize`` (building the quant), ``measure`` (its corpus units), ``bench`` (its
benchmark units, outcomes and per-prompt fidelity). Tokens/s: the units' forward tokens over
the stage's wall time (medians over repeats). The projection scales each per-quant stage to
the default study's quant count and adds the reference and noise-floor stages as measured.
Both variants' per-prompt results are compared (max relative difference of the stored
per-prompt KLDs and outcome scores). Quote ``lscpu``'s model name with the figures.
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

import numpy as np
import torch


# ---- the baseline: the LM head per prompt and per choice --------------------------------------
def _before_score_batch(head: Any, batch: Sequence[Any], index: Sequence[int],
                        reducer: Any) -> list[Any]:
    """The previous ``hf_loglik._score_batch``: the same passes of the body
    (``hf_loglik.body_passes``), then the head once per prompt's context, once per choice and
    once per reduced segment."""
    from quantfid.backends.base import LoglikResult
    from quantfid.backends.hf_loglik import body_passes

    dev = head.device
    states, cs, conts, _rows, hid = body_passes(head, batch)
    plen = [len(p.context) for p in batch]
    p_max = states.shape[1]
    last = states[:, -1, :]
    last_lsm = torch.log_softmax((head.head(last) if hid else last).float(), dim=-1)

    def reduce(w: int, pos0: int, x: torch.Tensor) -> list[Any]:
        return [reducer.full(w, pos0 + lo, head.head(x[lo:lo + head.chunk]) if hid
                             else x[lo:lo + head.chunk]) for lo in range(0, x.shape[0], head.chunk)]

    out, r = [], 0
    for b, p in enumerate(batch):
        ll = np.zeros(len(p.continuations))
        greedy = np.zeros(len(p.continuations), dtype=bool)
        red: list[Any] = []
        for c in range(len(p.continuations)):
            ct = conts[r].to(dev)
            lps, hits = [last_lsm[b][ct[0]].reshape(1)], [bool(last_lsm[b].argmax() == ct[0])]
            rest = None if cs is None else cs[r, :len(ct) - 1]
            if len(ct) > 1 and rest is not None:
                lsm = torch.log_softmax((head.head(rest) if hid else rest).float(), dim=-1)
                lps.append(lsm.gather(-1, ct[1:, None])[:, 0])
                hits.append(bool((lsm.argmax(-1) == ct[1:]).all()))
            ll[c], greedy[c] = float(torch.cat(lps).double().sum()), all(hits)
            if reducer is not None and c == p.gold:
                red += reduce(index[b], 0, states[b, p_max - plen[b]:])
                if rest is not None and rest.shape[0]:
                    red += reduce(index[b], plen[b], rest)
            r += 1
        out.append(LoglikResult(loglik=ll, is_greedy=greedy, reduced=red))
    return out


@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    from quantfid.backends import hf_loglik

    current = hf_loglik._score_batch
    if name == "before":
        hf_loglik._score_batch = torch.inference_mode()(_before_score_batch)
    try:
        yield
    finally:
        hf_loglik._score_batch = current


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
    """Max relative difference of per-prompt KLD means and of outcome scores."""
    from quantfid.store.workspace import Workspace

    out = {}
    for table, col in (("prompt_fidelity", "kld_mean"), ("outcomes", "score")):
        ra = {(r["model"], r["benchmark"], r["prompt_id"]): r[col]
              for r in Workspace(a).read_table(table).to_pylist()}
        rb = {(r["model"], r["benchmark"], r["prompt_id"]): r[col]
              for r in Workspace(b).read_table(table).to_pylist()}
        keys = sorted(set(ra) & set(rb))
        diffs = [abs(ra[k] - rb[k]) / max(abs(ra[k]), 1e-12) for k in keys
                 if ra[k] is not None and rb[k] is not None]
        out[f"{table}.{col}"] = max(diffs, default=0.0)
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
    study = Study(cfg, root / "ref", log=sys.stderr, progress=False)
    pool = study._pool()
    plan = study.plan(pool)
    is_ref = [u for u in plan.units if u.model.spec.role == "reference"]
    noise = [u for u in plan.units if u.stage == "noise"]
    quant_units = [u for u in plan.units if u.stage in ("measure", "bench")]
    base = run_units(is_ref, pool, root / "ref")
    base.update({f"noise_{k}": v for k, v in run_units(noise, pool, root / "ref").items()})
    times: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for i in range(args.repeats):
        for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
            ws = root / f"{name}-{i}"
            shutil.copytree(root / "ref", ws)
            with variant(name):
                for k, v in run_units(quant_units, pool, ws).items():
                    times[name].setdefault(k, []).append(v)
            print(f"done {name} repeat {i}", file=sys.stderr, flush=True)
    tokens = {"measure": sum(u.forward_tokens for u in quant_units if u.stage == "measure"),
              "bench": sum(u.forward_tokens for u in quant_units if u.stage == "bench")}
    n_full = len(config.preset("default").recipes) + len(full.models)
    res = summarize(times, tokens, base, len(sample), n_full)
    res.update({"quants": sample, "cpu": _cpu(), "torch_threads": torch.get_num_threads(),
                "differences": compare(root / "before-0", root / "after-0")})
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=2) if args.json else render(res))


def summarize(times: dict[str, dict[str, list[float]]], tokens: dict[str, int],
              base: dict[str, float], n_sample: int, n_full: int) -> dict[str, Any]:
    out: dict[str, Any] = {"reference_s": base, "stages": {}, "projected_min": {}}
    fixed = sum(base.values())
    for name, stages in times.items():
        med = {k: statistics.median(v) for k, v in stages.items()}
        out["stages"][name] = {k: {"wall_s": round(s, 2), "per_quant_s": round(s / n_sample, 2),
                                   "tokens_per_s": round(tokens[k] / s, 1) if k in tokens else None}
                               for k, s in med.items()}
        out["projected_min"][name] = round((fixed + sum(med.values()) / n_sample * n_full) / 60, 1)
    b, a = out["stages"]["before"].get("bench"), out["stages"]["after"].get("bench")
    out["bench_speedup"] = round(b["wall_s"] / a["wall_s"], 3) if a and b else None
    out["n_quants_full_study"] = n_full
    return out


def render(res: dict[str, Any]) -> str:
    lines = [f"cpu: {res['cpu']}, torch threads {res['torch_threads']}; sample {res['quants']}"]
    for name, stages in res["stages"].items():
        for k, v in stages.items():
            tps = "" if v["tokens_per_s"] is None else f", {v['tokens_per_s']} tok/s"
            lines.append(f"{name:>7} {k:<9} {v['per_quant_s']:7.2f} s/quant{tps}")
    lines.append(f"bench stage speedup (before / after): {res['bench_speedup']}x")
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
