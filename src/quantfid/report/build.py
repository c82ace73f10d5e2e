"""Assemble the report from an analysis result and its provenance, and write its files.

``write_report(out_dir, analysis, provenance)`` writes, at the top of ``out_dir``:
``report.html`` (self-contained), ``report.md`` (images beside it), ``plots/*.png`` and
``summary.json`` (every number: the analysis sections unchanged, ``provenance`` and
``verdict``). Content order: verdict, cohort table, plots, the sections' tables, method and
caveats, provenance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantfid import atomic, embedded
from quantfid.report import plots, view
from quantfid.report.blocks import Block, Bullets, Heading, Image, Note, Para, fmt, table_from_rows
from quantfid.report.render import to_html, to_markdown
from quantfid.report.verdict import RULES, Verdict, verdict

SECTIONS = ("cohort", "correlations", "silent_zone", "robustness", "decomposition",
            "failure_prediction", "router")
TITLE = "quantfid report: does fidelity predict quality?"
MAX_PANELS = 9


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    summary: Path
    plots: tuple[Path, ...]
    verdict: Verdict


def clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def is_embedded_reference(provenance: dict[str, Any]) -> bool:
    ref = provenance.get("reference")
    for mdl in provenance.get("inputs", {}).get("models", []):
        if mdl.get("id") == ref and str(mdl.get("source") or "").startswith("embedded:"):
            return True
    return ref == embedded.MODEL_ID


# ---- plots -----------------------------------------------------------------------------------

def _zone_rule(a: dict[str, Any], score: str) -> str | None:
    rules = view.silent_rules(a, score)
    return rules[0] if rules else None


def _plot_fidelity(a: dict[str, Any]) -> tuple[plots.Plot, str] | None:
    score, prim = view.primary_score(a), view.primary(a)
    rows = view.cohort_rows(a)
    if score is None or prim is None or not rows:
        return None
    rule = _zone_rule(a, score)
    silent = set(view.silent_members(a, score, rule) or []) if rule else set()
    same = [v for v in view.variants(a)
            if (v.get("corpus"), v.get("ctx")) == (prim.get("corpus"), prim.get("ctx"))]
    panels = []
    for v in same[:MAX_PANELS]:
        key = str(v["key"])
        r = view.find_corr(a, v["stat"], score, "full", corpus=v.get("corpus"), ctx=v.get("ctx"))
        rho = ("rho undefined" if r is None or r.get("rho") is None else
               f"rho {fmt(r.get('rho'), 2)} [{fmt(r.get('ci_low'), 2)}, {fmt(r.get('ci_high'), 2)}]")
        ci = [view.score_ci(c, score) for c in rows]
        panels.append(plots.Panel(
            title=f"{v['stat']}  {rho}", xlabel=key,
            x=[_nan(view.metric_value(c, key)) for c in rows],
            y=[_nan(view.score_value(c, score)) for c in rows],
            silent=[c.get("model") in silent for c in rows],
            y_low=[_nan(lo) for lo, _ in ci], y_high=[_nan(hi) for _, hi in ci],
            ref_score=view.reference_score(a, score), ylabel=f"{score} score"))
    if not panels:
        return None
    where = "/".join(str(x) for x in (prim.get("corpus"), prim.get("ctx")) if x is not None)
    cap = (f"Each fidelity variant ({where or 'as measured'}) vs the {score} benchmark score, one "
           f"point per quant, with the score's 95 % CI; shaded: the range of the silent zone "
           f"({rule or 'none'} rule, {len(silent)} quants); dashed: the reference's score. All "
           f"corpora and context lengths are in the robustness heatmap.")
    return plots.fidelity_vs_score(panels), cap


def _nan(x: float | None) -> float:
    return math.nan if x is None else x


def _plot_robustness(a: dict[str, Any]) -> tuple[plots.Plot, str] | None:
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
    p = plots.heatmap(v, rlabels, clabels, f"Spearman rho with the {score} score")
    return p, (f"Robustness: Spearman rho of every measurement variant (statistic @ corpus : "
               f"context) with the {score} score, over the full cohort and inside each silent "
               f"zone; blank = undefined (too few quants or constant values). Blue = a higher "
               f"value goes with a lower score.")


def _plot_decomposition(a: dict[str, Any]) -> tuple[plots.Plot, str] | None:
    prim, score = view.primary(a), view.primary_score(a)
    comp = view.rows_of(a.get("decomposition"), "composite")
    if prim is None or not comp:
        return None
    key = str(prim["key"])
    value = {c.get("model"): view.metric_value(c, key) for c in view.cohort_rows(a)}
    rule = _zone_rule(a, score) if score else None
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
    return (plots.volume_direction(xs, vol, dirn, sil, kld_label=key),
            f"Volume vs direction over all benchmarks: left, the flip volume (mean over benchmarks "
            f"of (G + L) / N) against {key}; right, the direction f = G / (G + L) of those flips "
            f"(dashed: 0.5, a coin toss). Silent zone: {rule or 'none'} rule.")


def _plot_failure(a: dict[str, Any]) -> tuple[plots.Plot, str] | None:
    rows = [r for r in view.rows_of(a.get("failure_prediction"))
            if r.get("subset", "all") == "all" and view.num(r.get("ratio")) is not None]
    if not rows:
        return None
    p = plots.forest([str(r.get("model")) for r in rows], [view.num(r.get("ratio")) for r in rows],
                     [view.num(r.get("ci_low")) for r in rows], [view.num(r.get("ci_high")) for r in rows],
                     1.0, "geometric mean of per-prompt KLD: failed / passed prompts",
                     "Per-prompt KLD of failed vs passed prompts", log=True)
    return p, ("Failure prediction: per quant, the ratio of the geometric mean of per-prompt KLD "
               "on the prompts it failed to that on the prompts it passed, with bootstrap 95 % CI "
               "(all prompts); 1 (dashed) = no signal.")


def _plot_router(a: dict[str, Any]) -> tuple[plots.Plot, str] | None:
    r = a.get("router")
    if not isinstance(r, dict):
        return None
    accs = [x for p in view.rows_of(r, "pairs") if (x := view.num(p.get("accuracy"))) is not None]
    pooled = r.get("pooled")
    pacc = view.num(pooled.get("accuracy")) if isinstance(pooled, dict) else None
    if not accs and pacc is None:
        return None
    lines = {"chance 0.5": 0.5}
    if pacc is not None:
        lines[f"pooled {pacc:.3f}"] = pacc
    p = plots.histogram(accs, "router accuracy (pick the quant with the lower per-prompt KLD)",
                        f"Router accuracy over {len(accs)} pair(s) of quants", lines, xlim=(0.0, 1.0))
    return p, ("Router: on the prompts where exactly one of two quants passes, pick the one with "
               "the lower per-prompt KLD; accuracy per pair (histogram), pooled, and chance.")


PLOTS: tuple[tuple[str, Callable[[dict[str, Any]], tuple[plots.Plot, str] | None]], ...] = (
    ("fidelity_vs_score.png", _plot_fidelity),
    ("robustness_heatmap.png", _plot_robustness),
    ("volume_direction.png", _plot_decomposition),
    ("failure_prediction.png", _plot_failure),
    ("router_accuracy.png", _plot_router),
)


# ---- tables --------------------------------------------------------------------------------

def _with_ci(v: float | None, lo: float | None, hi: float | None) -> str:
    if v is None:
        return "—"
    return fmt(v) if lo is None or hi is None else f"{fmt(v)} [{fmt(lo)}, {fmt(hi)}]"


def _by_bpw(c: dict[str, Any]) -> tuple[bool, float, str]:
    """Cohort order for tables: highest bits per weight first, unknown last, then by id."""
    bpw = c.get("bits_per_weight")
    return bpw is None, -float(bpw or 0.0), str(c.get("model"))


def _cohort_table(a: dict[str, Any]) -> list[Block]:
    rows, prim = sorted(view.cohort_rows(a), key=_by_bpw), view.primary(a)
    if not rows:
        return [Para("The analysis has no cohort (no quants with fidelity or outcomes).")]
    stat = prim.get("stat") if prim else None
    keys = [str(v["key"]) for v in view.variants(a) if v.get("stat") == stat]
    sc = view.scores(a)
    out_rows = []
    ref = cohort_ref = view.cohort(a).get("reference")
    if ref is not None:
        out_rows.append({"model": f"{ref} (reference)",
                         **{f"score {s}": fmt(view.reference_score(a, s)) for s in sc}})
    for c in rows:
        d: dict[str, Any] = {"model": c.get("model"), "bits/weight": c.get("bits_per_weight"),
                             "MB": None if c.get("bytes") is None else c["bytes"] / 1e6}
        for k in keys:
            d[k] = _with_ci(view.metric_value(c, k), *view.metric_ci(c, k))
        for s in sc:
            d[f"score {s}"] = _with_ci(view.score_value(c, s), *view.score_ci(c, s))
        out_rows.append(d)
    cols = ["model", "bits/weight", "MB", *keys, *(f"score {s}" for s in sc)]
    blocks: list[Block] = [table_from_rows(out_rows, cols, caption=(
        f"Per quant: bits per weight, size, the primary statistic ({stat}) on every corpus and "
        f"context with its block-bootstrap 95 % CI, and every benchmark score (accuracy, 95 % CI)."
        + (f" Reference: {cohort_ref}." if cohort_ref else "")))]
    allkeys = [str(v["key"]) for v in view.variants(a)]
    if len(allkeys) > len(keys):
        wide = [{"model": c.get("model"), **{k: view.metric_value(c, k) for k in allkeys}} for c in rows]
        blocks.append(table_from_rows(wide, ["model", *allkeys],
                                      caption="Every fidelity variant (statistic @ corpus : context)."))
    warnings = view.cohort(a).get("warnings")
    if warnings:
        blocks.append(Bullets(tuple(str(w) for w in warnings)))
    return blocks


def _section_tables(a: dict[str, Any]) -> list[Block]:
    out: list[Block] = []
    score = view.primary_score(a)
    sz = a.get("silent_zone")
    if isinstance(sz, dict) and sz:
        mde = {str(b.get("benchmark", b.get("score"))): b
               for b in view.rows_of(view.cohort(a), "benchmarks")}
        rows = []
        for s in sz:
            row: dict[str, Any] = {"score": s}
            for rule in view.RULES:
                m = view.silent_members(a, s, rule)
                row[rule] = "not applied" if m is None else (f"{len(m)}: {', '.join(m)}" if m else "0")
            info = mde.get(s, {})
            for k, v in info.items():
                if k not in ("benchmark", "score") and not isinstance(v, (dict, list)):
                    row[k] = v
            rows.append(row)
        out += [Heading("Silent zone", 3), table_from_rows(rows, caption=(
            "Members of each silent zone (paired: exact McNemar p >= 0.05 against the reference; "
            "band: score >= the band fraction of the reference's; lowest_k: the k lowest by the "
            "primary statistic), with each benchmark's minimum detectable effect at 80 % power."))]
    corr = [r for r in view.rows_of(a.get("robustness")) or view.correlations(a) if r.get("score") == score]
    if corr:
        out += [Heading("Correlations", 3), table_from_rows(corr, caption=(
            f"Spearman rho (bootstrap 95 % CI over quants) and Kendall tau of every variant with "
            f"the {score} score, full cohort and each silent zone; p_method says exact "
            f"(permutation) or t-approximation; p_bh: Benjamini-Hochberg across variants. Other "
            f"scores: summary.json."))]
    summ = view.rows_of(a.get("robustness"), "summary")
    if summ:
        out += [Heading("Robustness", 3), table_from_rows(summ, caption=(
            "Per (score, subset, rule): across every measurement variant, the range of rho and how "
            "many variants see a significant link before and after Benjamini-Hochberg."))]
    dec = a.get("decomposition")
    if isinstance(dec, dict):
        comp = view.rows_of(dec, "composite")
        if comp:
            out += [Heading("Volume and direction", 3), table_from_rows(comp, caption=(
                f"Flips against the reference summed over benchmarks; identity score_q - score_ref "
                f"= V (2f - 1) / N holds exactly for every row: {fmt(dec.get('identity_holds'))}."))]
        dc = view.rows_of(dec, "correlations")
        if dc:
            out.append(table_from_rows(dc, caption="Spearman of the primary statistic with flip "
                                       "volume and with net direction (2f - 1)."))
        per = view.rows_of(dec)
        if per:
            out.append(table_from_rows(per, caption="Per quant and benchmark."))
    fp = view.rows_of(a.get("failure_prediction"))
    if fp:
        out += [Heading("Failure prediction", 3), table_from_rows(fp, caption=(
            "Per quant: geometric mean of per-prompt KLD on failed and passed prompts, their "
            "ratio (bootstrap 95 % CI), AUROC, Mann-Whitney p; subset ref_passed: only prompts "
            "the reference passed."))]
    r = a.get("router")
    if isinstance(r, dict):
        pooled = r.get("pooled")
        rows = ([{"scope": "pooled", **pooled}] if isinstance(pooled, dict) else []) + \
            [{"scope": str(b.get("benchmark")), **{k: v for k, v in b.items() if k != "benchmark"}}
             for b in view.rows_of(r, "per_benchmark")]
        if rows:
            out += [Heading("Router", 3), table_from_rows(rows, caption=(
                "Pooled over every pair of quants and per benchmark: disagreement prompts, ties, "
                "accuracy of picking the lower-KLD quant (95 % CI), binomial p against 50 %. Per "
                "pair: summary.json."))]
    return out


def _method(provenance: dict[str, Any]) -> list[Block]:
    out: list[Block] = [
        Heading("Method and caveats"),
        Para("Fidelity is measured token by token against the reference: KL(P_ref || P_quant) in "
             "nats from float32 log-softmax, llama.cpp's windows (BOS replaces each window's first "
             "token, the second half of each window is scored), with block-bootstrap CIs over "
             "windows. Benchmarks are scored per prompt (log-likelihood choice, acc); a quant's "
             "flips against the reference are gains G and losses L, volume G + L, direction "
             "G / (G + L), and score_q - score_ref = (G - L) / N exactly."),
        Para("The silent zone is the set of quants whose score cannot be told from the "
             "reference's, under several rules side by side (paired: exact McNemar test not "
             "significant at 5 %; band: score >= a fraction of the reference's; lowest_k: the k "
             "quants with the lowest primary fidelity statistic). Correlations are Spearman rho "
             "with bootstrap CIs over quants (exact permutation p-values for small n)."),
        Para("The verdict is derived by these stated rules (quantfid.analysis.verdict):"),
        Bullets(RULES),
        Bullets((
            "Small cohorts and few prompts give wide intervals: read the CIs, not the point values.",
            "A benchmark can only see drops larger than its minimum detectable effect (the silent "
            "zone table): the silent zone is where the benchmark is blind, not where the quants "
            "are equal.",
        )),
    ]
    if is_embedded_reference(provenance):
        out.append(Note("Reference: " + embedded.CAVEAT))
    return out


def _provenance_blocks(p: dict[str, Any]) -> list[Block]:
    out: list[Block] = [Heading("Provenance")]
    mach = p.get("machine", {})
    out.append(Bullets(tuple(s for s in (
        f"quantfid {p.get('tool_version')}, report created {p.get('created')}",
        f"reference: {p.get('reference')}",
        f"machine: {mach.get('cpu') or mach.get('machine')}, {mach.get('cpu_count')} CPUs, "
        f"Python {mach.get('python')}, torch {mach.get('torch_version', '—')}",
        f"seeds: {fmt(p.get('seeds'))}" if p.get("seeds") else "",
    ) if s)))
    timings = p.get("timings_s") or {}
    cpu = p.get("cpu_s") or {}
    if timings:
        out.append(table_from_rows(
            [{"stage": k, "wall s": v, **({"cpu s": cpu.get(k)} if cpu else {})}
             for k, v in timings.items()],
            caption="Time per stage (wall clock; cpu: process CPU time over all threads)."))
    inputs = p.get("inputs", {})
    if inputs.get("models"):
        out.append(table_from_rows(inputs["models"], caption="Models (hash: sha256 of the weights "
                                   "file, or of the recipe and its reference)."))
    corp = inputs.get("corpora") or {}
    if corp:
        out.append(table_from_rows([{"corpus": k, **{kk: vv for kk, vv in (v or {}).items()
                                                     if not isinstance(vv, (dict, list))}}
                                    for k, v in corp.items()], caption="Corpora."))
    bench = inputs.get("benchmarks") or {}
    if bench:
        out.append(table_from_rows([{"benchmark": k, **{kk: vv for kk, vv in (v or {}).items()
                                                        if not isinstance(vv, (dict, list))}}
                                    for k, v in bench.items()], caption="Benchmarks."))
    return out


def build(analysis: dict[str, Any], provenance: dict[str, Any],
          v: Verdict | None = None) -> tuple[list[Block], Verdict]:
    """The report's blocks (plots rendered) and the verdict they open with."""
    a = clean(analysis)
    v = v or verdict(a)
    blocks: list[Block] = [Heading("Verdict"), Para(v.headline, strong=True)]
    if v.findings:
        blocks.append(Bullets(tuple(v.findings)))
    if is_embedded_reference(provenance):
        blocks.append(Note(embedded.CAVEAT))
    blocks.append(Heading("Cohort"))
    blocks += _cohort_table(a)
    blocks.append(Heading("Plots"))
    made = 0
    for name, fn in PLOTS:
        res = fn(a)
        if res is None:
            continue
        p, cap = res
        blocks.append(Image(name=name, caption=cap, png=p.png, width=p.width, height=p.height))
        made += 1
    if not made:
        blocks.append(Para("No plot could be drawn: the analysis has too little data."))
    blocks.append(Heading("Analyses"))
    blocks += _section_tables(a)
    blocks += _method(provenance)
    blocks += _provenance_blocks(provenance)
    return blocks, v


def summary(analysis: dict[str, Any], provenance: dict[str, Any], v: Verdict) -> dict[str, Any]:
    """``summary.json``: the analysis sections unchanged, ``provenance`` and ``verdict``."""
    a = clean(analysis)
    out = {k: a.get(k) for k in SECTIONS}
    out.update({k: v2 for k, v2 in a.items() if k not in out})
    out["provenance"] = clean(provenance)
    out["verdict"] = v.to_json()
    return out


def write_report(out_dir: str | Path, analysis: dict[str, Any], provenance: dict[str, Any],
                 v: Verdict | None = None) -> ReportFiles:
    """Write report.html, report.md, plots/*.png and summary.json at the top of ``out_dir``."""
    out = Path(out_dir)
    blocks, v = build(analysis, provenance, v)
    pngs = []
    for b in blocks:
        if isinstance(b, Image):
            path = out / "plots" / b.name
            atomic.write_bytes(path, b.png)
            pngs.append(path)
    atomic.write_text(out / "report.html", to_html(TITLE, blocks))
    atomic.write_text(out / "report.md", to_markdown(TITLE, blocks, "plots"))
    atomic.write_json(out / "summary.json", summary(analysis, provenance, v))
    return ReportFiles(html=out / "report.html", markdown=out / "report.md",
                       summary=out / "summary.json", plots=tuple(pngs), verdict=v)
