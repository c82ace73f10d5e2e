"""Plain-text tables of analysis results (what ``quantfid analyze`` prints by default)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:.2f}"
    if isinstance(v, list):
        return ", ".join(map(str, v)) if v else "(none)"
    return str(v)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


CORR_HEADERS = ("metric", "corpus", "ctx", "score", "subset", "rule", "n", "rho", "ci_low",
                "ci_high", "p", "p_method", "tau", "tau_p")


def correlation_rows(entries: Sequence[dict[str, Any]]) -> list[list[Any]]:
    return [[e[h] for h in CORR_HEADERS] for e in entries]


def format_table_result(j: dict[str, Any]) -> str:
    parts = [f"cohort: {j['n']} models", ""]
    if j["excluded"]:
        parts += ["left out of pairs with an empty cell:",
                  table(("name", "missing"), [[e["name"], e["missing"]] for e in j["excluded"]]), ""]
    parts += ["rank correlations (lower-is-better metrics: a useful one has negative rho)",
              table(CORR_HEADERS, correlation_rows(j["correlations"])), "", "silent zones"]
    parts.append(table(("score", "rule", "n", "members"),
                       [[s, r, len(m), m] for s, z in j["silent_zone"].items() for r, m in z.items()]))
    return "\n".join(parts)


def format_analysis(j: dict[str, Any], verdict_text: str | None = None) -> str:
    c = j["cohort"]
    st = c["settings"]
    primary = st.get("primary")
    scores = c["scores"]
    parts = [f"reference: {c['reference']}   quants: {len(c['quants'])}   primary metric: {primary}", ""]
    rows = []
    for r in c["rows"]:
        m = r["metrics"].get(primary, {}) if primary else {}
        rows.append([r["model"], r["bits_per_weight"],
                     None if r["bytes"] is None else r["bytes"] / 1e6, m.get("value"),
                     *[r["scores"][s]["accuracy"] for s in scores]])
    parts += ["cohort", table(("model", "bpw", "MB", primary or "metric", *scores), rows), ""]
    parts += ["reference scores: " + ", ".join(f"{s} {_cell(v)}" for s, v in c["reference_scores"].items()), ""]
    if c["benchmarks"]:
        parts += ["minimum detectable effect at 80 % power (accuracy difference)",
                  table(("benchmark", "n", "ref acc", "discordance", "mde paired", "mde unpaired"),
                        [[b["benchmark"], b["n"], b["reference_accuracy"], b["discordance_rate"],
                          b["mde_paired"], b["mde_unpaired"]] for b in c["benchmarks"]]), ""]
    res = (j.get("resolution") or {}).get("scores") or {}
    parts += [f"silent zones (resolved: the benchmark sees a drop of "
              f"{(j.get('resolution') or {}).get('threshold', 0.05):.0%} of the reference's score)",
              table(("score", "rule", "n", "status", "mde", "mde/ref", "prompts needed", "members"),
                    [[s, r, None if m is None else len(m),
                      (res.get(s, {}).get(r) or {}).get("status"),
                      (res.get(s, {}).get(r) or {}).get("mde"),
                      (res.get(s, {}).get(r) or {}).get("mde_relative"),
                      (res.get(s, {}).get(r) or {}).get("prompts_needed"), m]
                     for s, z in j["silent_zone"].items() for r, m in z.items()]), ""]
    pv = {v["key"]: v for v in c["variants"]}.get(primary or "")
    sel = [e for e in j["correlations"]
           if pv and e["metric"] == pv["stat"] and e["corpus"] == pv["corpus"] and e["ctx"] == pv["ctx"]]
    parts += [f"rank correlations of {primary} (a useful lower-is-better metric has negative rho)",
              table(CORR_HEADERS, correlation_rows(sel)), ""]
    rob = j["robustness"]
    parts += [f"robustness across {len(c['variants'])} measurement variants (BH family: {rob['family']}; "
              "oriented rho: -rho for same_top1, so negative = agrees with score)",
              table(("score", "subset", "rule", "variants", "or. rho min", "or. rho median", "or. rho max",
                     "p<a", "BH p<a", "CI excl 0"),
                    [[s["score"], s["subset"], s["rule"], s["n_defined"], s["oriented_rho_min"],
                      s["oriented_rho_median"], s["oriented_rho_max"], s["n_p_below_alpha"], s["n_bh_below_alpha"], s["n_ci_excludes_zero"]]
                     for s in rob["summary"]]), ""]
    dec = j["decomposition"]
    if dec["composite"]:
        parts += [f"volume and direction (identity score_q - score_ref = V(2f-1)/N holds: "
                  f"{_cell(dec['identity_holds'])})",
                  table(("model", "gains", "losses", "volume", "flip rate", "net direction"),
                        [[r["model"], r["gains"], r["losses"], r["volume_sum"], r["flip_rate_mean"],
                          r["net_direction"]] for r in dec["composite"]]), "",
                  table(("quantity", "benchmark", "subset", "rule", "n", "rho", "ci_low", "ci_high", "p"),
                        [[e["quantity"], e["benchmark"], e["subset"], e["rule"], e["n"], e["rho"],
                          e["ci_low"], e["ci_high"], e["p"]] for e in dec["correlations"]]), ""]
    fp = j["failure_prediction"]
    if fp["rows"]:
        parts += ["failure prediction (per-prompt KLD, failed vs passed; stratified: within "
                  "benchmarks, the figure to read; pooled: unstratified)",
                  table(("model", "subset", "benchmark", "failed", "passed", "gm ratio", "ci_low",
                         "ci_high", "AUROC", "p"),
                        [[r["model"], r["subset"], r.get("benchmark"), r["n_failed"], r["n_passed"],
                          r["ratio"], r["ci_low"], r["ci_high"], r["auroc"], r["p"]]
                         for r in fp["rows"]]), ""]
    ro = j["router"]
    if ro["pooled"]:
        keys = ("disagree", "ties", "decided", "accuracy", "ci_low", "ci_high", "p", "method")
        rr = [["pooled", *[ro["pooled"][k] for k in keys]]]
        if ro.get("pooled_silent"):
            rr.append([f"silent pairs ({ro['silent_rule']})", *[ro["pooled_silent"][k] for k in keys]])
        rr += [[b["benchmark"], *[b[k] for k in keys]]
               for b in ro["per_benchmark"]]
        parts += [f"router (lower per-prompt KLD wins; {len(ro['pairs'])} pairs)",
                  table(("over", *keys), rr), ""]
    for w in [*c.get("warnings", []), *((c.get("numerics") or {}).get("warnings") or [])]:
        parts.append(f"warning: {w}")
    if verdict_text:
        parts += ["verdict", verdict_text]
    return "\n".join(parts)
