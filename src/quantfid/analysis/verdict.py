"""The verdict: one plain sentence, the few numbers behind it, and the caveats that change
its reading, derived from an analysis result by stated rules.

Rules (primary metric = ``cohort.settings.primary`` on a workspace, else the first metric;
score = ``"mean"`` when present, else the first score):

* The metric ORDERS the cohort if the full-cohort bootstrap 95 % interval of Spearman's rho
  excludes 0 on the useful side (below 0 for a lower-is-better metric, above 0 for top-1
  agreement) and its p-value is below 0.05.
* A zone is unresolved when its minimum detectable effect (exact McNemar, power 0.8, two-sided
  5 %, at the zone's median discordance rate) exceeds the resolution threshold (default 5 %) of
  the reference's score, or when it holds the whole cohort. An unresolved zone gives no
  finding: the verdict says the sample cannot tell, and about how many prompts would.
* A resolved zone of fewer than 5 quants gives no finding either (an exact rank test on 4
  quants cannot reach p < 0.05). In a resolved zone of 5 or more, the link HOLDS if the zone's
  rho has p < 0.05 and a 95 % interval excluding 0; otherwise there is no detectable link near
  the reference (an undefined rho, a constant column, counts as no detectable link).
* Near the reference, the verdict rests on one silent-zone rule: the first of paired test,
  score band, lowest KLD (in that order) whose zone is resolved and holds at least 5 quants
  with a defined rho; else the first resolved one; else the paired rule. The headline names it.
* Router: the pooled routing accuracy's 95 % interval (studentized cluster bootstrap over
  prompts) includes 0.5 -> at chance; above -> better than chance; below -> worse than chance;
  the same for the pairs inside the silent zone.
* Failure prediction: the median over quants of the within-benchmark (stratified) failed/passed
  geometric-mean KLD ratio and of the stratified AUROC; an AUROC within [0.45, 0.55] is called
  near chance.
* Noise floor: the quants whose primary-metric interval reaches the noise floor's are counted;
  their distance from the reference is within numerics noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quantfid.analysis import wording as w
from quantfid.analysis.correlation import direction

CHANCE_AUROC = (0.45, 0.55)
ALPHA = 0.05
RULE_ORDER = ("paired", "band", "lowest_k")
MIN_ZONE_QUANTS = 5  # an exact two-sided rank test on 4 quants has p >= 2/24


@dataclass(frozen=True)
class Verdict:
    headline: str
    findings: tuple[str, ...]
    flags: dict[str, Any]
    caveats: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"headline": self.headline, "findings": list(self.findings),
                "caveats": list(self.caveats), "flags": self.flags}

    def __str__(self) -> str:
        return "\n".join([self.headline, *(f"  - {f}" for f in self.findings),
                          *(f"  ! {c}" for c in self.caveats)])


@dataclass
class _Ctx:
    j: dict[str, Any]
    stat: str
    corpus: Any
    ctx: Any
    score: str
    label: str
    sign: int
    findings: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)
    flags: dict[str, Any] = field(default_factory=dict)


def _significant(c: dict[str, Any] | None, sign: int | None = None) -> bool:
    """rho with p < ALPHA and an interval excluding 0 (on the useful side when ``sign``)."""
    if c is None or c.get("rho") is None or c.get("p") is None or c["p"] >= ALPHA:
        return False
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if lo is None or hi is None:
        return False
    if sign is None:
        return bool(lo > 0 or hi < 0)
    return bool(hi < 0) if sign < 0 else bool(lo > 0)


def _rho(c: dict[str, Any]) -> str:
    return (f"{c['rho']:.2f} ({w.interval(c.get('ci_low'), c.get('ci_high'))}, "
            f"p = {c['p']:.2g})")


def _primary(j: dict[str, Any], corr: list[dict[str, Any]]) -> tuple[str, Any, Any]:
    first = corr[0]
    key = ((j.get("cohort") or {}).get("settings") or {}).get("primary")
    if key is not None:
        for v in j["cohort"].get("variants", []):
            if v["key"] == key:
                return v["stat"], v["corpus"], v["ctx"]
    return first["metric"], first["corpus"], first["ctx"]


def _zone(x: _Ctx, rule: str, entry: dict[str, Any] | None, full_n: int) -> dict[str, Any]:
    """Status and resolution of one zone rule of the verdict's score."""
    res = (((x.j.get("resolution") or {}).get("scores") or {}).get(x.score) or {}).get(rule)
    if res is None:  # table mode: no per-prompt outcomes to judge resolution from
        n = 0 if entry is None else entry["n"]
        res = {"status": "empty" if n == 0 else ("unresolved" if n >= full_n else "unknown"),
               "reasons": ["whole cohort"] if n and n >= full_n else [], "n_members": n}
    return {"rule": rule, "entry": entry, **res}


def _testable(z: dict[str, Any]) -> bool:
    e = z["entry"]
    return e is not None and e.get("rho") is not None and e["n"] >= MIN_ZONE_QUANTS


def _pick(zones: list[dict[str, Any]]) -> dict[str, Any] | None:
    for ok in (lambda z: z["status"] == "resolved" and _testable(z),
               lambda z: z["status"] == "resolved",
               lambda z: z["status"] == "unknown" and _testable(z)):
        hit = next((z for z in zones if ok(z)), None)
        if hit is not None:
            return hit
    return zones[0] if zones else None


def _rule_text(x: _Ctx, rule: str) -> str:
    settings = (x.j.get("cohort") or {}).get("settings") or {}
    k = (settings.get("k") or {}).get(x.score)
    return w.rule_label(rule, band=settings.get("band"), k=k, metric=w.stat_name(x.stat),
                        best="lowest" if x.sign < 0 else "highest")


def _zone_finding(x: _Ctx, z: dict[str, Any]) -> str:
    who = _rule_text(x, z["rule"])
    n = z.get("n_members", 0)
    if z["status"] == "unresolved":
        parts = [f"Near the reference ({who}: {n} of {z.get('cohort_size', n)} quants): "
                 "unresolved"]
        if "whole cohort" in z.get("reasons", []):
            parts.append("the zone holds every quant, so the benchmark tells none of them "
                         "from the reference")
        if z.get("mde") is not None:
            rel, thr = z.get("mde_relative"), z.get("threshold")
            than = ("more than" if rel is None or thr is None or rel > thr else "within")
            parts.append(f"with {z['n_prompts']:,} prompts the smallest score drop it reliably "
                         f"detects is {z['mde']:.3f} ({w.pct(rel)} of the "
                         f"reference's {z['reference_accuracy']:.2f}), {than} the "
                         f"{w.pct(thr)} that matters")
        elif z.get("n_prompts") is not None:
            parts.append(f"with {z['n_prompts']:,} prompts it cannot detect any drop at this "
                         "rate of disagreement")
        if z.get("prompts_needed"):
            parts.append(f"about {z['prompts_needed']:,} prompts would resolve it")
        return "; ".join(parts) + "."
    e = z["entry"]
    res = ("" if z.get("mde") is None else
           f"; the benchmark sees drops of {z['mde']:.3f} ({w.pct(z.get('mde_relative'))} of "
           f"the reference's score) or more")
    if z["status"] == "unknown":
        res = "; resolution unknown (no per-prompt outcomes)"
    if not _testable(z):
        return (f"Near the reference ({who}: {n} quants{res}): too few quants (or too little "
                f"spread) for a rank correlation to show a link; at least {MIN_ZONE_QUANTS} "
                "are needed.")
    verdict = "the link holds" if _significant(e) else "no detectable link"
    return (f"Near the reference ({who}: {e['n']} quants{res}): Spearman's rho = {_rho(e)}; "
            f"{verdict}.")


def _headline(x: _Ctx, ranks: bool, n: int, z: dict[str, Any] | None) -> str:
    base = w.capital(x.label) if x.stat in w.STAT_NAMES else x.label
    what = w.score_label(x.score)
    if not ranks:
        return f"{base} does not reliably order these {n} quants by {what}."
    if z is None or z["status"] == "empty":
        return f"{base} orders these {n} quants by {what}; no quant is near enough the reference to test it there."
    who = _rule_text(x, z["rule"])
    if z["status"] == "unresolved":
        need = (f" (about {z['prompts_needed']:,} would be needed)" if z.get("prompts_needed")
                else "")
        prompts = f"these {z['n_prompts']:,} prompts" if z.get("n_prompts") else "this sample"
        return (f"{base} orders these {n} quants by {what} overall; whether it still does among "
                f"{who} cannot be told from {prompts}{need}.")
    e = z["entry"]
    tail = " (zone resolution unknown)" if z["status"] == "unknown" else ""
    if not _testable(z):
        return (f"{base} orders these {n} quants by {what} overall; among {who} there are too "
                f"few ({z.get('n_members', 0)}) to tell whether it still does.")
    if e is not None and _significant(e):
        return f"{base} orders these {n} quants by {what}, including among {who}{tail}."
    return (f"{base} orders these {n} quants by {what} overall, but not among {who}{tail}: "
            "there it does not tell you what the benchmarks would.")


def _router(x: _Ctx) -> None:
    r = x.j.get("router") or {}
    pooled = r.get("pooled")
    if not pooled or pooled.get("accuracy") is None or pooled.get("ci_low") is None:
        return

    def state(s: dict[str, Any]) -> str:
        lo, hi = s["ci_low"], s["ci_high"]
        return "at chance" if lo <= 0.5 <= hi else ("better than chance" if lo > 0.5 else "worse than chance")

    x.flags["router"] = state(pooled)
    text = (f"Routing: for two quants, picking the one with the lower per-prompt KLD on the "
            f"prompts where exactly one passes is right {w.pct(pooled['accuracy'])} of the time "
            f"({w.interval(pooled['ci_low'], pooled['ci_high'], w.pct)}, "
            f"{w.count(pooled['decided'], 'decision')} over "
            f"{w.count(len(r.get('pairs', [])), 'pair')}): "
            f"{x.flags['router']}; 50 % is a coin toss")
    rs = r.get("pooled_silent")
    if rs and rs.get("accuracy") is not None and rs.get("ci_low") is not None:
        x.flags["router_silent"] = state(rs)
        text += (f"; among pairs near the reference ({w.short_rule(str(r.get('silent_rule')))}): "
                 f"{w.pct(rs['accuracy'])} ({w.interval(rs['ci_low'], rs['ci_high'], w.pct)})")
    x.findings.append(text + ".")


def _failure(x: _Ctx) -> None:
    fp = ((x.j.get("failure_prediction") or {}).get("summary") or {}).get("all")
    if not fp or fp.get("ratio_median") is None:
        return
    auc = fp.get("auroc_median")
    near = auc is not None and CHANCE_AUROC[0] <= auc <= CHANCE_AUROC[1]
    x.flags["failure_auroc_near_chance"] = near
    x.findings.append(
        f"Failure prediction (within benchmarks): on the prompts a quant fails its per-prompt "
        f"KLD is {fp['ratio_median']:.2f}x that on the prompts it passes (median over "
        f"{fp['n_models']} quants, range {fp['ratio_min']:.2f}-{fp['ratio_max']:.2f}); the "
        f"chance that a failed prompt has the higher KLD is {w.num(auc)}"
        + (" (near the 0.5 of a coin toss)." if near else " (0.5 would be a coin toss)."))


def _noise_floor(x: _Ctx) -> None:
    c = x.j.get("cohort") or {}
    key = (c.get("settings") or {}).get("primary")
    floor = (c.get("noise_floor") or {}).get(key)
    if not floor:
        return
    flags = [((r.get("metrics") or {}).get(key) or {}).get("within_noise_floor")
             for r in c.get("rows", [])]
    hits = sum(1 for f in flags if f)
    x.flags["noise_floor_overlaps"] = hits
    x.findings.append(
        f"Noise floor ({floor.get('method') or floor.get('model')}): {w.stat_name(x.stat)} "
        f"{floor['value']:.3g}; {hits} of {len(flags)} quants reach it, so their distance from "
        "the reference is within numerics noise." if hits else
        f"Noise floor ({floor.get('method') or floor.get('model')}): {w.stat_name(x.stat)} "
        f"{floor['value']:.3g}; every quant is clearly above it.")


def verdict(result: Any) -> Verdict:
    """Verdict for an ``AnalysisResult`` / ``TableResult`` or its ``to_json()`` dict."""
    j: dict[str, Any] = result if isinstance(result, dict) else result.to_json()
    corr = j.get("correlations", [])
    if not corr:
        return Verdict("No rank correlation to judge: the cohort has no fidelity metric or no "
                       "benchmark score.", (), {})
    stat, corpus, ctx = _primary(j, corr)
    scores = list(dict.fromkeys(c["score"] for c in corr))
    score = "mean" if "mean" in scores else scores[0]
    x = _Ctx(j, stat, corpus, ctx, score, w.metric_label(stat, corpus, ctx), direction(stat))
    x.flags.update({"metric": stat, "score": score})
    mine = [c for c in corr if (c["metric"], c["corpus"], c["ctx"], c["score"])
            == (stat, corpus, ctx, score)]
    full = next((c for c in mine if c["subset"] == "full"), None)
    return _judge(x, mine, full)


def _numerics(j: dict[str, Any]) -> list[str]:
    return [f"Numerics: {s}." for s in (((j.get("cohort") or {}).get("numerics") or {})
                                        .get("warnings") or [])]


def _judge(x: _Ctx, mine: list[dict[str, Any]], full: dict[str, Any] | None) -> Verdict:
    n = 0 if full is None else int(full["n"])
    defined = full is not None and full.get("rho") is not None
    ranks = defined and _significant(full, x.sign)
    if defined and full is not None:
        x.flags["ranks_full_cohort"] = ranks
        better = "lower" if x.sign < 0 else "higher"
        x.findings.append(
            f"Over all {n} quants: Spearman's rho between {x.label} and "
            f"{w.score_label(x.score)} = {_rho(full)}; a useful {better}-is-better metric has a "
            f"{'negative' if x.sign < 0 else 'positive'} rho.")
    else:
        x.findings.append(f"Spearman's rho needs at least 3 quants with both values and some "
                          f"spread; this cohort has {n}.")
    silent = {c["rule"]: c for c in mine if c["subset"] == "silent"}
    zones = [_zone(x, r, silent.get(r), n) for r in RULE_ORDER if r in silent]
    x.flags["zone_status"] = {z["rule"]: z["status"] for z in zones}
    x.flags["silent_by_rule"] = {
        z["rule"]: (None if z["status"] in ("unresolved", "empty") or not _testable(z) else
                    not _significant(z["entry"])) for z in zones}
    pick = _pick(zones)
    x.flags["headline_rule"] = None if pick is None else pick["rule"]
    headline = (_headline(x, ranks, n, pick) if defined else
                f"Too few quants ({n}) to tell whether {x.label} orders them by "
                f"{w.score_label(x.score)}.")
    if pick is not None and pick["status"] != "empty":
        x.findings.append(_zone_finding(x, pick))
        _unresolved_caveat(x, pick)
    _failure(x)
    _router(x)
    _noise_floor(x)
    x.caveats.extend(_numerics(x.j))
    return Verdict(headline, tuple(x.findings), x.flags, tuple(x.caveats))


def _unresolved_caveat(x: _Ctx, pick: dict[str, Any]) -> None:
    if pick["status"] != "unresolved":
        return
    if pick.get("mde") is not None:
        x.caveats.append(
            f"Unresolved near-reference zone: a quant in it may lose up to {pick['mde']:.3f} "
            f"accuracy ({w.pct(pick.get('mde_relative'))} of the reference's score) without the "
            "benchmark noticing; do not read \"in the zone\" as \"as good as the reference\".")
    else:
        x.caveats.append("Unresolved near-reference zone: at this rate of disagreement with the "
                         "reference the benchmark sample could not detect any drop; do not read "
                         "\"in the zone\" as \"as good as the reference\".")
