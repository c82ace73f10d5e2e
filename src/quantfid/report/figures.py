"""The report's plots, each with a one-line takeaway computed from the analysis.

Every builder takes the analysis JSON and the verdict's flags (the zone rule the verdict
rests on) and returns ``Figure`` (plot, takeaway, caption) or None when there is too little
data to draw it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.analysis import wording as w
from quantfid.report import plots, view
from quantfid.report.blocks import fmt

MAX_PANELS = 9


@dataclass(frozen=True)
class Figure:
    plot: plots.Plot
    takeaway: str
    caption: str


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _rule(a: dict[str, Any], flags: dict[str, Any], score: str | None) -> str | None:
    rule = flags.get("headline_rule")
    if rule is not None:
        return str(rule)
    rules = view.silent_rules(a, score)
    return rules[0] if rules else None


def _rho_text(r: dict[str, Any] | None) -> str:
    if r is None or r.get("rho") is None:
        return "rho undefined"
    return f"rho {r['rho']:.2f} [{fmt(r.get('ci_low'), 2)}, {fmt(r.get('ci_high'), 2)}]"


def _zone_state(a: dict[str, Any], flags: dict[str, Any], score: str, rule: str) -> str:
    status = (flags.get("zone_status") or {}).get(rule) or view.resolution(a, score, rule).get("status")
    if status == "unresolved":
        return "unresolved (the benchmark cannot see a 5 % drop there)"
    silent = (flags.get("silent_by_rule") or {}).get(rule)
    if silent is None:
        return "too few quants to tell"
    return "no detectable link" if silent else "the link holds"


def fidelity(a: dict[str, Any], flags: dict[str, Any]) -> Figure | None:
    score, prim = view.primary_score(a), view.primary(a)
    rows = view.cohort_rows(a)
    if score is None or prim is None or not rows:
        return None
    rule = _rule(a, flags, score)
    silent = set(view.silent_members(a, score, rule) or []) if rule else set()
    same = [v for v in view.variants(a)
            if (v.get("corpus"), v.get("ctx")) == (prim.get("corpus"), prim.get("ctx"))]
    panels = []
    ci = [view.score_ci(c, score) for c in rows]
    for v in same[:MAX_PANELS]:
        key = str(v["key"])
        r = view.find_corr(a, v["stat"], score, "full", corpus=v.get("corpus"), ctx=v.get("ctx"))
        floor = view.floor_of(a, key)
        panels.append(plots.Panel(
            title=f"{v['stat']}  {_rho_text(r)}", xlabel=key,
            x=[_nan(view.metric_value(c, key)) for c in rows],
            y=[_nan(view.score_value(c, score)) for c in rows],
            silent=[c.get("model") in silent for c in rows],
            y_low=[_nan(lo) for lo, _ in ci], y_high=[_nan(hi) for _, hi in ci],
            ref_score=view.reference_score(a, score), ylabel=f"{score} score",
            floor=None if floor is None else view.num(floor.get("value"))))
    if not panels:
        return None
    full = view.find_corr(a, prim["stat"], score, "full", corpus=prim.get("corpus"), ctx=prim.get("ctx"))
    take = f"{w.capital(w.stat_name(str(prim['stat'])))} vs {score} score: {_rho_text(full)} over all quants"
    if rule:
        take += f"; near the reference ({w.short_rule(rule)}): {_zone_state(a, flags, score, rule)}."
    where = w.where(prim.get("corpus"), prim.get("ctx")) or "as measured"
    cap = (f"Each fidelity statistic ({where}) against the {score} score, one point per quant, "
           f"with the score's 95 % interval; shaded: the near-reference zone ({w.short_rule(rule or '')}, "
           f"{len(silent)} quants); dashed: the reference's score; dotted: the noise floor where "
           "measured. Other corpora and contexts: the robustness heatmap.")
    return Figure(plots.fidelity_vs_score(panels), take, cap)


def robustness(a: dict[str, Any], flags: dict[str, Any]) -> Figure | None:
    score = view.primary_score(a)
    rows = [r for r in (view.rows_of(a.get("robustness")) or view.correlations(a))
            if r.get("score") == score]
    if not rows:
        return None

    def rlabel(r: dict[str, Any]) -> str:
        return view.variant_key(str(r.get("metric")), r.get("corpus"), r.get("ctx"))

    def clabel(r: dict[str, Any]) -> str:
        return "full" if r.get("subset") == "full" else f"silent:{r.get('rule')}"

    rlabels = list(dict.fromkeys(rlabel(r) for r in rows))
    clabels = list(dict.fromkeys(clabel(r) for r in rows))
    v = np.full((len(rlabels), len(clabels)), np.nan)
    for r in rows:
        x = view.num(r.get("rho"))
        if x is not None:
            v[rlabels.index(rlabel(r)), clabels.index(clabel(r))] = x
    if not np.isfinite(v).any():
        return None
    full = [r for r in rows if r.get("subset") == "full"]
    excl = sum(1 for r in full if r.get("ci_low") is not None and r.get("ci_high") is not None
               and (r["ci_low"] > 0 or r["ci_high"] < 0))
    take = (f"{excl} of {len(full)} measurement variants have a full-cohort rho whose 95 % "
            "interval excludes 0.")
    return Figure(plots.heatmap(v, rlabels, clabels, f"Spearman rho with the {score} score"), take,
                  f"Spearman rho of every measurement variant (statistic @ corpus : context) with "
                  f"the {score} score, over the full cohort and inside each near-reference zone; "
                  "blank = undefined (too few quants or constant values); blue = a higher value "
                  "goes with a lower score.")


def decomposition(a: dict[str, Any], flags: dict[str, Any]) -> Figure | None:
    prim, score = view.primary(a), view.primary_score(a)
    dec = a.get("decomposition")
    comp = view.rows_of(dec, "composite")
    if prim is None or not comp:
        return None
    key = str(prim["key"])
    value = {c.get("model"): view.metric_value(c, key) for c in view.cohort_rows(a)}
    rule = _rule(a, flags, score)
    silent = set(view.silent_members(a, score, rule) or []) if rule else set()
    xs, vol, dirn, sil = [], [], [], []
    for r in comp:
        x, rate = value.get(r.get("model")), view.num(r.get("flip_rate_mean"))
        g, lo = view.num(r.get("gains")), view.num(r.get("losses"))
        if x is None or rate is None:
            continue
        xs.append(x)
        vol.append(rate)
        dirn.append(g / (g + lo) if g is not None and lo is not None and g + lo > 0 else math.nan)
        sil.append(r.get("model") in silent)
    if not xs:
        return None
    corr = {(c.get("quantity"), c.get("benchmark"), c.get("subset")): c
            for c in view.rows_of(dec, "correlations")}
    take = (f"Flip volume vs {w.stat_name(str(prim['stat']))}: "
            f"{_rho_text(corr.get(('volume', 'composite', 'full')))}; net direction: "
            f"{_rho_text(corr.get(('net_direction', 'composite', 'full')))}.")
    return Figure(plots.volume_direction(xs, vol, dirn, sil, kld_label=key), take,
                  f"Left: how often each quant's answers differ from the reference's (mean over "
                  f"benchmarks of (G + L) / N) against {key}; right: the share of those flips "
                  f"that are gains, G / (G + L) (dashed: 0.5, a coin toss).")


def failure(a: dict[str, Any], flags: dict[str, Any]) -> Figure | None:
    rows = [r for r in view.rows_of(a.get("failure_prediction"))
            if r.get("subset", "all") == "all" and r.get("benchmark", "stratified") == "stratified"
            and view.num(r.get("ratio")) is not None]
    if not rows:
        return None
    ratios = [float(r["ratio"]) for r in rows]
    above = sum(1 for r in rows if (view.num(r.get("ci_low")) or 0.0) > 1.0)
    take = (f"Within benchmarks, failed prompts carry {float(np.median(ratios)):.2f}x the "
            f"per-prompt KLD of passed ones (median over {len(rows)} quants); {above} of "
            f"{len(rows)} intervals lie above 1.")
    p = plots.forest([str(r.get("model")) for r in rows], ratios,
                     [view.num(r.get("ci_low")) for r in rows], [view.num(r.get("ci_high")) for r in rows],
                     1.0, "geometric mean of per-prompt KLD: failed / passed prompts (within benchmarks)",
                     "Per-prompt KLD of failed vs passed prompts", log=True)
    return Figure(p, take, "Per quant, the within-benchmark (stratified) ratio of the geometric "
                  "mean of per-prompt KLD on failed to passed prompts, with its bootstrap 95 % "
                  "interval; 1 (dashed) = no signal. Per benchmark and pooled: the collapsed "
                  "failure-prediction table.")


def router(a: dict[str, Any], flags: dict[str, Any]) -> Figure | None:
    r = a.get("router")
    if not isinstance(r, dict):
        return None
    accs = [x for p in view.rows_of(r, "pairs") if (x := view.num(p.get("accuracy"))) is not None]
    pooled = r.get("pooled")
    pacc = view.num(pooled.get("accuracy")) if isinstance(pooled, dict) else None
    if not accs and pacc is None:
        return None
    lines = {"chance 0.5": 0.5}
    take = "No pooled routing accuracy."
    if pacc is not None and isinstance(pooled, dict):
        lines[f"pooled {pacc:.3f}"] = pacc
        lo, hi = view.num(pooled.get("ci_low")), view.num(pooled.get("ci_high"))
        state = ("no interval" if lo is None or hi is None else "at chance" if lo <= 0.5 <= hi
                 else "better than chance" if lo > 0.5 else "worse than chance")
        take = f"Pooled routing accuracy {w.pct(pacc)} ({w.interval(lo, hi, w.pct)}): {state}."
    p = plots.histogram(accs, "router accuracy (pick the quant with the lower per-prompt KLD)",
                        f"Router accuracy over {len(accs)} pair(s) of quants", lines, xlim=(0.0, 1.0))
    return Figure(p, take, "On the prompts where exactly one of two quants passes, pick the one "
                  "with the lower per-prompt KLD: accuracy per pair (histogram), pooled, and chance.")


BUILDERS: tuple[tuple[str, Callable[[dict[str, Any], dict[str, Any]], Figure | None]], ...] = (
    ("fidelity_vs_score.png", fidelity),
    ("robustness_heatmap.png", robustness),
    ("volume_direction.png", decomposition),
    ("failure_prediction.png", failure),
    ("router_accuracy.png", router),
)
