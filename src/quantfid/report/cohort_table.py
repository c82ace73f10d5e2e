"""The report's cohort table (at most 10 columns), its overflow table and the zones table.

Cohort table columns: quant, bits per weight, size, the primary fidelity figure with its
95 % interval, the noise-floor flag (when a floor was measured), the near-reference zone
marks of the headline score, and one score column per benchmark for up to four benchmarks
(plus the mean when it fits); further benchmarks and the mean go to a second table.
"""

from __future__ import annotations

from typing import Any

from quantfid.analysis import wording as w
from quantfid.report import view
from quantfid.report.blocks import Block, Para, Table, fmt, table_from_rows

MAX_BENCH = 4
MAX_COLUMNS = 10
MARKS = {"paired": "P", "band": "B", "lowest_k": "K"}
CI_WORDS = {"moving-block-bootstrap": "a moving-block bootstrap within the window(s), block "
                                      "length from the autocorrelation of per-token KLD",
            "window-bootstrap": "a bootstrap over windows",
            "token-bootstrap": "a bootstrap over tokens",
            "unrecorded": "a bootstrap (method not recorded)"}


def _g(x: float, sig: int) -> str:
    return f"{x:.{sig}g}"


def with_ci(v: float | None, lo: float | None, hi: float | None, sig: int = 3) -> str:
    """``value [low, high]`` with ``sig`` significant digits (no exponent above 1e-4)."""
    if v is None:
        return "—"
    return _g(v, sig) if lo is None or hi is None else f"{_g(v, sig)} [{_g(lo, sig)}, {_g(hi, sig)}]"


def score_ci(v: float | None, lo: float | None, hi: float | None) -> str:
    """An accuracy with its interval, two decimals."""
    if v is None:
        return "—"
    return f"{v:.2f}" if lo is None or hi is None else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def by_bpw(c: dict[str, Any]) -> tuple[bool, float, str]:
    """Cohort order for tables: highest bits per weight first, unknown last, then by id."""
    bpw = c.get("bits_per_weight")
    return bpw is None, -float(bpw or 0.0), str(c.get("model"))


def _marks(a: dict[str, Any], score: str | None, model: str) -> str:
    out = []
    for rule, mark in MARKS.items():
        members = view.silent_members(a, score, rule)
        if members is None or model not in members:
            continue
        status = view.resolution(a, score, rule).get("status")
        out.append(f"({mark})" if status == "unresolved" else mark)
    return " ".join(out) or "—"


def _score_split(a: dict[str, Any], fixed: int) -> tuple[list[str], list[str]]:
    """Scores in the main table and in the overflow table."""
    bench = view.benchmarks(a)
    main = bench[:MAX_BENCH]
    rest = bench[MAX_BENCH:]
    if view.MEAN in view.scores(a) and len(bench) > 1:
        (main if fixed + len(main) < MAX_COLUMNS and not rest else rest).append(view.MEAN)
    return main, rest


def _numerics_line(a: dict[str, Any]) -> str:
    groups: dict[str, list[str]] = {}
    for c in view.cohort_rows(a):
        n = c.get("numerics") or {}
        if n.get("backend") is None and n.get("numerics") is None:
            continue
        groups.setdefault(f"{n.get('backend') or '?'} backend, {n.get('numerics') or '?'} "
                          "numerics", []).append(str(c.get("model")))
    if not groups:
        return "Backend and numerics: not recorded in this workspace."
    return "Measured with " + "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items()) + "."


def cohort_tables(a: dict[str, Any]) -> list[Block]:
    rows, prim = sorted(view.cohort_rows(a), key=by_bpw), view.primary(a)
    if not rows:
        return [Para("The analysis has no cohort (no quants with fidelity or outcomes).")]
    score = view.primary_score(a)
    key = str(prim["key"]) if prim else None
    floor = view.floor_of(a, key) if key else None
    fixed = 5 + (floor is not None)
    main, rest = _score_split(a, fixed)
    stat = w.stat_name(str(prim["stat"])) if prim else "fidelity"
    col_fid = f"{stat} [95 % CI]"
    cols = ["quant", "bits/weight", "size MB", col_fid, *(["noise floor"] if floor else []),
            "near ref.", *main]
    ref = view.cohort(a).get("reference")
    out: list[dict[str, Any]] = [{"quant": "reference",
                                  **{s: score_ci(view.reference_score(a, s), None, None)
                                     for s in main}}]
    for c in rows:
        m = str(c.get("model"))
        d: dict[str, Any] = {"quant": m, "bits/weight": c.get("bits_per_weight"),
                             "size MB": None if c.get("bytes") is None else c["bytes"] / 1e6,
                             col_fid: with_ci(view.metric_value(c, key), *view.metric_ci(c, key))
                             if key else "—", "near ref.": _marks(a, score, m)}
        if floor is not None:
            f = view.within_floor(c, str(key))
            d["noise floor"] = "—" if f is None else ("within" if f else "above")
        for s in main:
            d[s] = score_ci(view.score_value(c, s), *view.score_ci(c, s))
        out.append(d)
    found = {view.ci_method(c, key) for c in rows} if key else set()
    methods = sorted(CI_WORDS.get(m, m) for m in found if m)
    cap = (f"Quants by bits per weight; reference: {ref}. {w.capital(stat)} "
           f"{w.where(prim.get('corpus'), prim.get('ctx')) if prim else ''}"
           + (f", 95 % interval from {' and '.join(methods)}" if methods else ", no interval")
           + (f"; noise floor {fmt(floor.get('value'))} ({floor.get('method') or floor.get('model')}): "
              "within = the quant cannot be told above it" if floor else "")
           + f". Near ref. ({score}): P = a paired test cannot tell it from the reference, "
           f"B = scores within the band, K = among the lowest {stat}; (unresolved zones in "
           f"brackets). Scores: accuracy [Wilson 95 % interval]. {_numerics_line(a)}")
    blocks: list[Block] = [table_from_rows(out, cols, caption=cap, id="cohort-table",
                                           csv="csv/cohort.csv")]
    if rest:
        more: list[dict[str, Any]] = [{"quant": "reference",
                 **{s: score_ci(view.reference_score(a, s), None, None) for s in rest}}]
        more += [{"quant": c.get("model"), **{s: score_ci(view.score_value(c, s), *view.score_ci(c, s))
                                             for s in rest}} for c in rows]
        blocks.append(table_from_rows(more, ["quant", *rest], caption="More scores."))
    return blocks


def zones_table(a: dict[str, Any], flags: dict[str, Any]) -> Table | None:
    score = view.primary_score(a)
    rules = view.silent_rules(a, score)
    if score is None or not rules:
        return None
    rows = []
    for rule in rules:
        members = view.silent_members(a, score, rule) or []
        r = view.resolution(a, score, rule)
        mde = view.num(r.get("mde"))
        rel = view.num(r.get("mde_relative"))
        rows.append({"zone rule": w.short_rule(rule), "quants": len(members),
                     "members": ", ".join(members[:6]) + (" …" if len(members) > 6 else ""),
                     "smallest drop it sees": "none detectable" if mde is None and r
                     else ("—" if mde is None else f"{mde:.3f} ({w.pct(rel)} of ref.)"),
                     "status": r.get("status", "—"),
                     "prompts to resolve": r.get("prompts_needed")})
    head = flags.get("headline_rule")
    thr = (a.get("resolution") or {}).get("threshold", 0.05)
    return table_from_rows(rows, caption=(
        f"Near-reference zones for the {score} score. A zone is resolved when a paired test at "
        f"its members' disagreement rate would detect (power 0.8, two-sided 5 %) a drop of "
        f"{w.pct(thr)} of the reference's score, and the zone is not the whole cohort."
        + (f" The verdict rests on the {w.short_rule(str(head))} rule." if head else "")),
        id="zones-table", csv="csv/zones.csv")
