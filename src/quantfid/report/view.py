"""Read the analysis result (``quantfid.analysis.run_all(ws).to_json()``) for the report.

The shape (documented in ``quantfid.analysis``): ``cohort`` has ``rows`` (per quant:
``model, bits_per_weight, bytes, metrics{variant key: {value, ci_low, ci_high}},
scores{score: {n, accuracy, ci_low, ci_high}}``), ``variants`` (``key, stat, corpus, ctx``),
``reference``, ``reference_scores`` and ``settings`` (``metric``, ``primary`` variant key);
``correlations`` is a list of entries (``metric`` = a stat, with ``corpus``/``ctx``);
``silent_zone`` maps each score to ``{paired, band, lowest_k}`` member lists; the other
sections hold ``rows`` lists. Every accessor is tolerant: a missing section gives an empty
answer and the report says so, instead of failing.
"""

from __future__ import annotations

import math
from typing import Any

from quantfid.analysis.silent_zone import ZONE_RULES

MEAN = "mean"


def num(v: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def rows_of(section: Any, key: str = "rows") -> list[dict[str, Any]]:
    """A section's row list: the list itself, or ``section[key]``."""
    if isinstance(section, dict):
        section = section.get(key)
    if isinstance(section, list):
        return [r for r in section if isinstance(r, dict)]
    return []


def cohort(a: dict[str, Any]) -> dict[str, Any]:
    c = a.get("cohort")
    return c if isinstance(c, dict) else {}


def cohort_rows(a: dict[str, Any]) -> list[dict[str, Any]]:
    return rows_of(cohort(a))


def variants(a: dict[str, Any]) -> list[dict[str, Any]]:
    return rows_of(cohort(a), "variants")


def variant_key(stat: str, corpus: Any = None, ctx: Any = None) -> str:
    """``stat@corpus:ctx`` as the analysis names variants."""
    if corpus is None:
        return stat
    return f"{stat}@{corpus}" + ("" if ctx is None else f":{ctx}")


def primary(a: dict[str, Any]) -> dict[str, Any] | None:
    """The primary variant (``{key, stat, corpus, ctx}``): the settings' one, else the first."""
    vs = variants(a)
    key = (cohort(a).get("settings") or {}).get("primary")
    for v in vs:
        if v.get("key") == key:
            return v
    return vs[0] if vs else None


def scores(a: dict[str, Any]) -> list[str]:
    s = cohort(a).get("scores")
    return [str(x) for x in s] if isinstance(s, list) else []


def primary_score(a: dict[str, Any]) -> str | None:
    """``mean`` (over benchmarks) when present, else the first score."""
    s = scores(a)
    return MEAN if MEAN in s else (s[0] if s else None)


def reference_score(a: dict[str, Any], score: str) -> float | None:
    rs = cohort(a).get("reference_scores")
    return num(rs.get(score)) if isinstance(rs, dict) else None


def metric_value(row: dict[str, Any], key: str) -> float | None:
    m = (row.get("metrics") or {}).get(key)
    return num(m.get("value")) if isinstance(m, dict) else num(m)


def metric_ci(row: dict[str, Any], key: str) -> tuple[float | None, float | None]:
    m = (row.get("metrics") or {}).get(key)
    return (num(m.get("ci_low")), num(m.get("ci_high"))) if isinstance(m, dict) else (None, None)


def score_value(row: dict[str, Any], score: str) -> float | None:
    s = (row.get("scores") or {}).get(score)
    return num(s.get("accuracy")) if isinstance(s, dict) else num(s)


def score_ci(row: dict[str, Any], score: str) -> tuple[float | None, float | None]:
    s = (row.get("scores") or {}).get(score)
    return (num(s.get("ci_low")), num(s.get("ci_high"))) if isinstance(s, dict) else (None, None)


def correlations(a: dict[str, Any]) -> list[dict[str, Any]]:
    return rows_of(a.get("correlations"))


def find_corr(a: dict[str, Any], stat: str, score: str, subset: str, rule: str | None = None,
              corpus: Any = None, ctx: Any = None) -> dict[str, Any] | None:
    """The correlation entry of (stat on corpus/ctx, score, subset, rule)."""
    for r in correlations(a):
        if (r.get("metric"), r.get("score"), r.get("subset")) != (stat, score, subset):
            continue
        if subset != "full" and r.get("rule") != rule:
            continue
        if (r.get("corpus"), r.get("ctx")) != (corpus, ctx):
            continue
        return r
    return None


def silent_members(a: dict[str, Any], score: str | None, rule: str) -> list[str] | None:
    """Members of the silent zone of ``score`` under ``rule``; None when the rule was not
    applied (``paired`` without per-prompt outcomes)."""
    zone = (a.get("silent_zone") or {}).get(score) if score is not None else None
    if not isinstance(zone, dict):
        return None
    members = zone.get(rule)
    return [str(m) for m in members] if isinstance(members, list) else None


def silent_rules(a: dict[str, Any], score: str | None) -> list[str]:
    return [r for r in ZONE_RULES if silent_members(a, score, r) is not None]


def resolution(a: dict[str, Any], score: str | None, rule: str) -> dict[str, Any]:
    """The resolution entry of a zone rule (``status``, ``mde``, ...), {} when absent."""
    res = ((a.get("resolution") or {}).get("scores") or {}).get(score or "") or {}
    r = res.get(rule)
    return r if isinstance(r, dict) else {}


def floor_of(a: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The noise floor of a variant key (``value``, ``ci_low``, ``ci_high``, ``method``)."""
    f = (cohort(a).get("noise_floor") or {}).get(key)
    return f if isinstance(f, dict) else None


def within_floor(row: dict[str, Any], key: str) -> bool | None:
    m = (row.get("metrics") or {}).get(key)
    v = m.get("within_noise_floor") if isinstance(m, dict) else None
    return v if isinstance(v, bool) else None


def ci_method(row: dict[str, Any], key: str) -> str | None:
    m = (row.get("metrics") or {}).get(key)
    v = m.get("ci_method") if isinstance(m, dict) else None
    return str(v) if v is not None else None


def settings(a: dict[str, Any]) -> dict[str, Any]:
    s = cohort(a).get("settings")
    return s if isinstance(s, dict) else {}


def benchmarks(a: dict[str, Any]) -> list[str]:
    """The benchmark scores (every score but ``mean``)."""
    return [s for s in scores(a) if s != MEAN]
