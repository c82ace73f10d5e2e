"""A short verdict derived from an analysis result by stated thresholds, quoting its numbers.

Rules (primary metric = ``cohort.settings.primary`` on a workspace, else the first metric;
score = ``"mean"`` when present, else the first score):

* The metric RANKS the cohort if the full-cohort bootstrap CI of rho excludes 0 on the
  useful side (below 0 for a lower-is-better metric, above 0 for ``same_top1``) and its
  p-value is below ``ALPHA`` = 0.05.
* It is SILENT near baseline under a rule unless that silent zone's rho has p < ``ALPHA``
  and a CI excluding 0 (an undefined rho, fewer than 3 quants or a constant column, is
  silent too).
* Headline: ranks and silent under every rule with a zone -> "<metric> ranks the cohort but
  not near baseline"; ranks and not silent under some rule -> "... and still orders the
  silent zone"; CI includes 0 -> "<metric> does not rank this cohort"; no full rho -> "too
  few quants to judge".
* Router: the pooled Clopper-Pearson CI of routing accuracy includes 0.5 -> chance;
  above -> better than chance; below -> worse than chance; the same for the pairs inside
  the silent zone (``pooled_silent``).
* Failure prediction: the median over quants of the failed/passed geometric-mean KLD ratio
  and of AUROC; AUROC within [0.45, 0.55] is called "near chance".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantfid.analysis.correlation import direction

CHANCE_AUROC = (0.45, 0.55)
ALPHA = 0.05


@dataclass(frozen=True)
class Verdict:
    headline: str
    findings: tuple[str, ...]
    flags: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"headline": self.headline, "findings": list(self.findings), "flags": self.flags}

    def __str__(self) -> str:
        return "\n".join([self.headline, *(f"  - {f}" for f in self.findings)])


def _fmt(c: dict[str, Any]) -> str:
    if c.get("rho") is None:
        return f"rho undefined (n = {c['n']})"
    ci = ("" if c.get("ci_low") is None
          else f" [{c['ci_low']:.2f}, {c['ci_high']:.2f}]")
    return f"rho = {c['rho']:.2f}{ci}, n = {c['n']}, p = {c['p']:.2g} ({c['p_method']})"


def _excludes_zero_useful(c: dict[str, Any], sign: int) -> bool:
    lo, hi = c.get("ci_low"), c.get("ci_high")
    if lo is None or hi is None or c.get("p") is None or c["p"] >= ALPHA:
        return False
    return bool(hi < 0) if sign < 0 else bool(lo > 0)


def verdict(result: Any) -> Verdict:
    """Verdict for an ``AnalysisResult`` / ``TableResult`` or its ``to_json()`` dict."""
    j: dict[str, Any] = result if isinstance(result, dict) else result.to_json()
    corr = j.get("correlations", [])
    settings = (j.get("cohort") or {}).get("settings") or {}
    primary_key = settings.get("primary")
    if not corr:
        return Verdict("no correlations to judge (no metric or no score)", (), {})
    first = corr[0]
    if primary_key is not None:
        variants = {v["key"]: v for v in j["cohort"]["variants"]}
        pv = variants.get(primary_key, {"stat": first["metric"], "corpus": first["corpus"],
                                        "ctx": first["ctx"]})
        metric, corpus, ctx = pv["stat"], pv["corpus"], pv["ctx"]
    else:
        metric, corpus, ctx = first["metric"], first["corpus"], first["ctx"]
    scores = list(dict.fromkeys(c["score"] for c in corr))
    score = "mean" if "mean" in scores else scores[0]
    mine = [c for c in corr if c["metric"] == metric and c["corpus"] == corpus
            and c["ctx"] == ctx and c["score"] == score]
    full = next((c for c in mine if c["subset"] == "full"), None)
    sign = direction(metric)
    label = metric if corpus is None else f"{metric} ({corpus}" + (f", ctx {ctx})" if ctx else ")")
    findings: list[str] = []
    flags: dict[str, Any] = {"metric": metric, "score": score}
    if full is None or full.get("rho") is None:
        return Verdict(f"too few quants to judge {label} against {score}",
                       (f"full cohort: {_fmt(full)}",) if full else (), flags)
    ranks = _excludes_zero_useful(full, sign)
    flags["ranks_full_cohort"] = ranks
    findings.append(f"full cohort vs {score}: {_fmt(full)}; a useful "
                    f"{'lower' if sign < 0 else 'higher'}-is-better metric has "
                    f"{'negative' if sign < 0 else 'positive'} rho")
    silent: dict[str, bool] = {}
    for c in mine:
        if c["subset"] != "silent" or c["n"] == 0:
            continue
        is_silent = not (c.get("rho") is not None and c.get("ci_low") is not None
                         and not (c["ci_low"] <= 0 <= c["ci_high"])
                         and c.get("p") is not None and c["p"] < ALPHA)
        silent[c["rule"]] = is_silent
        findings.append(f"silent zone ({c['rule']}): {_fmt(c)} -> "
                        + ("no detectable link" if is_silent else "link persists"))
    flags["silent_by_rule"] = silent
    if not ranks:
        headline = f"{label} does not rank this cohort on {score} (rho CI includes 0 or has the wrong sign)"
    elif silent and all(silent.values()):
        headline = f"{label} ranks the cohort on {score} but not near baseline"
    elif silent:
        keep = ", ".join(r for r, s in silent.items() if not s)
        headline = f"{label} ranks the cohort on {score} and still orders the silent zone ({keep})"
    else:
        headline = f"{label} ranks the cohort on {score}; no silent zone to test"
    router = (j.get("router") or {}).get("pooled")
    if router and router.get("accuracy") is not None:
        lo, hi = router["ci_low"], router["ci_high"]
        state = "at chance" if lo <= 0.5 <= hi else ("better than chance" if lo > 0.5 else "worse than chance")
        flags["router"] = state
        findings.append(f"router: {router['correct']}/{router['decided']} = {router['accuracy']:.1%} "
                        f"[{lo:.1%}, {hi:.1%}] on disagreement prompts ({router['ties']} ties) -> {state}")
        rs = j["router"].get("pooled_silent")
        if rs and rs.get("accuracy") is not None:
            lo, hi = rs["ci_low"], rs["ci_high"]
            st = "at chance" if lo <= 0.5 <= hi else ("better than chance" if lo > 0.5 else "worse than chance")
            flags["router_silent"] = st
            findings.append(f"router within the silent zone ({j['router']['silent_rule']}): "
                            f"{rs['correct']}/{rs['decided']} = {rs['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] -> {st}")
    fp = ((j.get("failure_prediction") or {}).get("summary") or {}).get("all")
    if fp and fp.get("ratio_median") is not None:
        auc = fp.get("auroc_median")
        near = auc is not None and CHANCE_AUROC[0] <= auc <= CHANCE_AUROC[1]
        flags["failure_auroc_near_chance"] = near
        findings.append(f"failure prediction over {fp['n_models']} quants: median failed/passed "
                        f"KLD ratio {fp['ratio_median']:.2f} (range {fp['ratio_min']:.2f}-"
                        f"{fp['ratio_max']:.2f}), median AUROC "
                        + ("n/a" if auc is None else f"{auc:.2f}") + (" (near chance)" if near else ""))
    return Verdict(headline, tuple(findings), flags)
