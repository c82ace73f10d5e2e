"""The verdict: does the primary fidelity metric predict quality for this model, and where does it stop.

Derived only from the analysis result and these stated thresholds (``THRESHOLDS``), quoting
the numbers it used — never canned text:

1. Full cohort: the metric *predicts* quality when the Spearman rho of the metric with the
   mean benchmark score has a bootstrap CI that excludes 0 and p < ``alpha``; the sign is
   the metric's (a divergence should correlate negatively).
2. Silent zone: it *stops* near baseline when, inside the silent zone (each rule), the CI
   of rho includes 0, or |rho| < ``weak_rho``, or the zone has fewer than ``min_zone`` quants
   (then nothing can be said: "too few").
3. Failure prediction: per-prompt KLD *barely* separates failed from passed prompts when the
   median geometric-mean ratio (failed / passed) over models is below ``gm_ratio_useful``
   or the median AUROC is below ``auroc_useful``.
4. Router: KLD routes *at chance* when the pooled accuracy's CI contains 0.5 (or, without a
   CI, the binomial p >= ``alpha``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from quantfid.report import view

THRESHOLDS: dict[str, float] = {
    "alpha": 0.05, "weak_rho": 0.3, "min_zone": 4, "gm_ratio_useful": 1.5, "auroc_useful": 0.6,
}


@dataclass(frozen=True)
class Finding:
    """One verdict line: the question, the answer (``yes`` | ``no`` | ``undetermined``), the text."""

    topic: str
    answer: str
    text: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "answer": self.answer, "text": self.text, "numbers": self.numbers}


@dataclass(frozen=True)
class Verdict:
    headline: str
    findings: tuple[Finding, ...]
    thresholds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"headline": self.headline, "findings": [f.to_json() for f in self.findings],
                "thresholds": dict(self.thresholds)}

    def text(self) -> str:
        return "\n".join([self.headline, *(f"- {f.text}" for f in self.findings)])


def _f(x: float | None, d: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def _ci(r: dict[str, Any]) -> str:
    lo, hi = view.num(r.get("ci_low")), view.num(r.get("ci_high"))
    return f"[{_f(lo)}, {_f(hi)}]" if lo is not None and hi is not None else "(no CI)"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def _excludes_zero(r: dict[str, Any]) -> bool | None:
    lo, hi = view.num(r.get("ci_low")), view.num(r.get("ci_high"))
    if lo is None or hi is None:
        return None
    return lo > 0 or hi < 0


def _full(a: dict[str, Any], v: dict[str, Any], score: str, t: dict[str, float]) -> Finding:
    metric = str(v["key"])
    r = view.find_corr(a, v["stat"], score, "full", corpus=v.get("corpus"), ctx=v.get("ctx"))
    if r is None or view.num(r.get("rho")) is None:
        return Finding("full_cohort", "undetermined",
                       f"No full-cohort correlation of {metric} with the {score} score could be "
                       f"computed (too few quants with both, or constant values).")
    rho, p, n = view.num(r.get("rho")), view.num(r.get("p")), r.get("n")
    excl = _excludes_zero(r)
    sig = (p is not None and p < t["alpha"]) and excl is not False
    nums = {"rho": rho, "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "p": p, "n": n}
    where = f"over the full cohort (n = {n})"
    if sig:
        return Finding("full_cohort", "yes",
                       f"{metric} predicts the {score} score {where}: Spearman rho = {_f(rho)} "
                       f"{_ci(r)}, p = {_p(p)} (CI excludes 0 and p < {t['alpha']}).", nums)
    return Finding("full_cohort", "no",
                   f"{metric} does not detectably predict the {score} score {where}: Spearman "
                   f"rho = {_f(rho)} {_ci(r)}, p = {_p(p)} (needs a CI excluding 0 and "
                   f"p < {t['alpha']}).", nums)


def _silent(a: dict[str, Any], v: dict[str, Any], score: str, t: dict[str, float]) -> list[Finding]:
    metric = str(v["key"])
    out = []
    for rule in view.silent_rules(a, score):
        members = view.silent_members(a, score, rule) or []
        n = len(members)
        if n < t["min_zone"]:
            out.append(Finding(f"silent_zone:{rule}", "undetermined",
                               f"Silent zone ({rule} rule): {n} quant(s), fewer than "
                               f"{int(t['min_zone'])}: too few to tell whether {metric} still "
                               f"ranks quality near baseline.", {"n": n}))
            continue
        r = view.find_corr(a, v["stat"], score, "silent", rule, corpus=v.get("corpus"), ctx=v.get("ctx"))
        if r is None or view.num(r.get("rho")) is None:
            out.append(Finding(f"silent_zone:{rule}", "undetermined",
                               f"Silent zone ({rule} rule): {n} quant(s), but no correlation of "
                               f"{metric} with the {score} score could be computed inside it "
                               f"(e.g. constant values).", {"n": n}))
            continue
        rho, p = view.num(r.get("rho")), view.num(r.get("p"))
        excl = _excludes_zero(r)
        collapsed = excl is False or (rho is not None and abs(rho) < t["weak_rho"]) or \
            (excl is None and (p is None or p >= t["alpha"]))
        nums = {"rho": rho, "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"), "p": p, "n": n}
        if collapsed:
            out.append(Finding(f"silent_zone:{rule}", "no",
                               f"Near baseline it stops: inside the silent zone ({rule} rule, "
                               f"n = {n}) rho = {_f(rho)} {_ci(r)}, p = {_p(p)} (CI includes 0 "
                               f"or |rho| < {t['weak_rho']}).", nums))
        else:
            out.append(Finding(f"silent_zone:{rule}", "yes",
                               f"Even inside the silent zone ({rule} rule, n = {n}) {metric} still "
                               f"ranks the {score} score: rho = {_f(rho)} {_ci(r)}, p = {_p(p)}.",
                               nums))
    return out


def _failure(a: dict[str, Any], t: dict[str, float]) -> Finding | None:
    rows = [r for r in view.rows_of(a.get("failure_prediction"))
            if r.get("subset", "all") == "all" and view.num(r.get("ratio")) is not None]
    if not rows:
        return None
    ratios = [float(r["ratio"]) for r in rows]
    aurocs = [x for r in rows if (x := view.num(r.get("auroc"))) is not None]
    med_r = statistics.median(ratios)
    med_a = statistics.median(aurocs) if aurocs else None
    useful = med_r >= t["gm_ratio_useful"] and (med_a is None or med_a >= t["auroc_useful"])
    n_sig = sum(1 for r in rows if (p := view.num(r.get("p"))) is not None and p < t["alpha"])
    nums = {"median_ratio": med_r, "min_ratio": min(ratios), "max_ratio": max(ratios),
            "median_auroc": med_a, "n_models": len(rows), "n_p_below_alpha": n_sig}
    text = (f"Per prompt, KLD on failed vs passed prompts: geometric-mean ratio median {_f(med_r)} "
            f"(range {_f(min(ratios))}–{_f(max(ratios))} over {len(rows)} quants), median AUROC "
            f"{_f(med_a)}, Mann-Whitney p < {t['alpha']} for {n_sig} of {len(rows)}")
    if useful:
        return Finding("failure_prediction", "yes", text + f": it separates failures (ratio >= "
                       f"{t['gm_ratio_useful']}, AUROC >= {t['auroc_useful']}).", nums)
    return Finding("failure_prediction", "no", text + f": it barely predicts which prompts fail "
                   f"(needs ratio >= {t['gm_ratio_useful']} and AUROC >= {t['auroc_useful']}).", nums)


def _router(a: dict[str, Any], t: dict[str, float]) -> Finding | None:
    r = a.get("router")
    pooled = r.get("pooled") if isinstance(r, dict) else None
    if not isinstance(pooled, dict) or view.num(pooled.get("accuracy")) is None:
        return None
    acc, p = view.num(pooled.get("accuracy")), view.num(pooled.get("p"))
    lo, hi = view.num(pooled.get("ci_low")), view.num(pooled.get("ci_high"))
    n, ties = pooled.get("decided"), pooled.get("ties")
    n_pairs = len(view.rows_of(r, "pairs")) if isinstance(r, dict) else 0
    nums = {"accuracy": acc, "ci_low": lo, "ci_high": hi, "p": p, "decided": n, "ties": ties,
            "disagree": pooled.get("disagree"), "n_pairs": n_pairs}
    if lo is not None and hi is not None:
        chance = lo <= 0.5 <= hi
        ci = f"[{_f(lo, 3)}, {_f(hi, 3)}]"
    else:
        chance = p is None or p >= t["alpha"]
        ci = "(no CI)"
    base = (f"Routing by the lower per-prompt KLD, pooled over {n_pairs} pairs of quants on "
            f"{n} decided disagreement prompt(s) ({ties} ties): accuracy {_f(acc, 3)} {ci}, "
            f"binomial p = {_p(p)} against 50 %")
    if chance:
        return Finding("router", "no", base + ": no better than a coin toss.", nums)
    better = acc is not None and acc > 0.5
    return Finding("router", "yes" if better else "no",
                   base + (": better than chance." if better else ": worse than chance."), nums)


def verdict(a: dict[str, Any], thresholds: dict[str, float] | None = None) -> Verdict:
    """The verdict for one analysis result (the JSON of ``run_all(ws).to_json()``)."""
    t = {**THRESHOLDS, **(thresholds or {})}
    v, score = view.primary(a), view.primary_score(a)
    if v is None or score is None:
        return Verdict("No verdict: the analysis has no fidelity variant and benchmark score to "
                       "correlate (it needs quants with both measured).", (), t)
    metric = str(v["key"])
    findings = [_full(a, v, score, t), *_silent(a, v, score, t)]
    findings += [f for f in (_failure(a, t), _router(a, t)) if f is not None]
    full = findings[0]
    rho = _f(full.numbers.get("rho"))
    silent = [f for f in findings if f.topic.startswith("silent_zone") and f.answer != "undetermined"]
    if full.answer == "yes" and silent and all(f.answer == "no" for f in silent):
        head = (f"{metric} predicts quality across this cohort (rho = {rho}) but stops near "
                f"baseline: inside the silent zone it does not rank quants.")
    elif full.answer == "yes" and silent and all(f.answer == "yes" for f in silent):
        head = (f"{metric} predicts quality across this cohort (rho = {rho}) and still ranks "
                f"quants inside the silent zone.")
    elif full.answer == "yes":
        head = (f"{metric} predicts quality across this cohort (rho = {rho}); near baseline the "
                f"evidence is mixed or too thin (see below).")
    elif full.answer == "no":
        head = (f"{metric} does not detectably predict quality for this model, even across the "
                f"whole cohort (rho = {rho}).")
    else:
        head = f"No verdict on {metric}: the full-cohort correlation could not be computed."
    return Verdict(head, tuple(findings), t)
