"""Per-stage wall time and tokens/s of the default study on a sample of its quants, the
benchmark stage with the current code (before) and with a candidate (after: the LM head once
per batch), measured in the same run, with the projected full-study time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_study.py \
        [--quants Q8_0,Q4_K_M,rtn-w4g128-sym] [--repeats 1] [--json]

The plan is the default study's (``quantfid.config.preset("default")``: its corpora, contexts,
windows, benchmarks and numerics), cut to the sampled quants. The reference's units run once
(timed as the ``reference`` stage). Then, per repeat, each variant runs every sampled quant's
units into its own copy of that workspace, the two variants alternating (the order swapped
every repeat) so both see the same machine load:

- ``before``: ``quantfid.backends.hf_loglik`` as it is: the LM head per prompt and per
  choice (its weight, V x H, streams from memory for every call);
- ``after``: the candidate ``_batched_score_batch`` below (one head pass per ``chunk`` rows of
  a whole batch). Measured 1.31x faster on the bench stage (2-core AMD EPYC; per-prompt KLD
  within 1.3e-5 relative, outcomes identical), it is not the default yet: the one full-suite
  run made with it failed the bitwise Ray and kill/resume tests, and two runs of the same
  code in two processes were also seen to differ by an ulp under CPU contention, so whether
  it or the contention caused that is open (see the closing note of that change).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantfid.backends.base import LoglikResult


# ---- the candidate: one LM-head pass per batch --------------------------------------------------
@torch.inference_mode()
def _batched_score_batch(head: Any, batch: Sequence[Any], index: Sequence[int],
                         reducer: Any) -> list[Any]:
    """``hf_loglik._score_batch`` with the LM head run once over every row of the batch that
    needs it (contexts' last positions, the choices' own positions, the gold sequences for the
    reducer), ``head.chunk`` rows at a time, the reducer fed per prompt in position order."""
    from quantfid.backends.hf_loglik import body_passes

    states, cont_states, conts, rows, is_hidden = body_passes(head, batch)
    segs = _segments(batch, states, cont_states, conts, rows, reducer is not None)
    return _results(batch, conts, _head_pass(head, segs, is_hidden, reducer, index))


@dataclass
class _Seg:
    """Rows of one prompt's states that need the head. cont = -1: context rows (the last
    one gives every choice's first token; all of them feed the reducer when ``reduce``);
    cont = c: choice c's own positions, predicting ``targets``. pos0: the first row's
    position in the prompt's sequence."""

    prompt: int
    cont: int
    rows: torch.Tensor  # (n, H) hidden states or (n, V) logits
    pos0: int
    reduce: bool
    targets: torch.Tensor | None = None  # (n,) int64


def _segments(batch: Sequence[Any], states: torch.Tensor,
              cont_states: torch.Tensor | None, conts: list[torch.Tensor],
              rows: list[tuple[int, int]], with_reducer: bool) -> list[_Seg]:
    """Per prompt in order (so the reducer sees each prompt's positions in order, prompt
    after prompt, as a per-prompt loop would): its context rows, then its choices' rows."""
    p_max = states.shape[1]
    segs = []
    for b, p in enumerate(batch):
        n = len(p.context)
        gold = with_reducer and p.gold is not None
        ctx = states[b, p_max - n:] if gold else states[b, p_max - 1:]  # (n or 1, H)
        segs.append(_Seg(b, -1, ctx, n - ctx.shape[0], gold))
        for r in (r for r, (rb, _) in enumerate(rows) if rb == b):
            c, ct = rows[r][1], conts[r]
            if cont_states is not None and len(ct) > 1:
                segs.append(_Seg(b, c, cont_states[r, :len(ct) - 1], n,
                                 with_reducer and p.gold == c, ct[1:]))
    return segs


def _chunks(segs: list[_Seg], size: int) -> Iterator[list[tuple[int, int, int]]]:
    """Pieces ``(segment, r0, r1)`` packed in order into chunks of at most ``size`` rows."""
    cur: list[tuple[int, int, int]] = []
    room = size
    for i, s in enumerate(segs):
        r0, n = 0, s.rows.shape[0]
        while r0 < n:
            take = min(room, n - r0)
            cur.append((i, r0, r0 + take))
            r0 += take
            room -= take
            if room == 0:
                yield cur
                cur, room = [], size
    if cur:
        yield cur


def _head_pass(head: Any, segs: list[_Seg], is_hidden: bool,
               reducer: Any, index: Sequence[int]) -> dict[str, Any]:
    """The LM head over every segment's rows together, ``head.chunk`` rows at a time: raw
    logits to the reducer (in position order per prompt), float32 log-softmax where a
    log-prob is needed. Returns ``first`` (prompt -> (V,) log-probs at its context's last
    position), ``picked`` ((prompt, choice) -> pieces of (target log-probs, all argmax)) and
    ``reduced`` (prompt -> reducer results)."""
    first: dict[int, torch.Tensor] = {}
    picked: dict[tuple[int, int], list[tuple[torch.Tensor, bool]]] = {}
    reduced: dict[int, list[Any]] = {}
    for pieces in _chunks(segs, head.chunk):
        x = torch.cat([segs[i].rows[r0:r1] for i, r0, r1 in pieces])
        logits = head.head(x) if is_hidden else x  # (n, V)
        at = 0
        for i, r0, r1 in pieces:
            s, part = segs[i], logits[at:at + r1 - r0]
            at += r1 - r0
            if s.reduce and reducer is not None:
                reduced.setdefault(s.prompt, []).append(
                    reducer.full(index[s.prompt], s.pos0 + r0, part))
            if s.cont < 0 and r1 == s.rows.shape[0]:
                first[s.prompt] = torch.log_softmax(part[-1].float(), dim=-1)
            elif s.cont >= 0:
                assert s.targets is not None
                lsm = torch.log_softmax(part.float(), dim=-1)
                tgt = s.targets[r0:r1].to(lsm.device)
                picked.setdefault((s.prompt, s.cont), []).append(
                    (lsm.gather(-1, tgt[:, None])[:, 0], bool((lsm.argmax(-1) == tgt).all())))
    return {"first": first, "picked": picked, "reduced": reduced}


def _results(batch: Sequence[Any], conts: list[torch.Tensor],
             out: dict[str, Any]) -> list[Any]:
    """Per prompt: each choice's float64 sum of its float32 log-probs, and whether every
    token is the argmax."""
    results, r = [], 0
    for b, p in enumerate(batch):
        n_c = len(p.continuations)
        ll = np.zeros(n_c, dtype=np.float64)
        greedy = np.zeros(n_c, dtype=bool)
        first = out["first"][b]
        for c in range(n_c):
            ct = conts[r].to(first.device)
            pieces = out["picked"].get((b, c), [])
            ll[c] = float(torch.cat([first[ct[:1]], *[lp for lp, _ in pieces]]).double().sum())
            greedy[c] = bool(first.argmax() == ct[0]) and all(h for _, h in pieces)
            r += 1
        results.append(LoglikResult(loglik=ll, is_greedy=greedy,
                                    reduced=out["reduced"].get(b, [])))
    return results



@contextlib.contextmanager
def variant(name: str) -> Iterator[None]:
    from quantfid.backends import hf_loglik

    current = hf_loglik._score_batch
    if name == "after":
        hf_loglik._score_batch = _batched_score_batch
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
