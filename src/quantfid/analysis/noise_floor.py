"""The noise floor: the fidelity figures below which differences are numerics, not quantization.

The pipeline measures the reference against itself under perturbed numerics (e.g. bf16
rounding after every layer) per corpus x ctx and writes the workspace table
``noise_floor``: the columns of the ``fidelity`` table (``model`` = e.g. ``"noise:bf16"``,
``reference, corpus, corpus_hash, ctx, scoring, n_windows``, every ``STATS_KEYS`` key, the
CIs) plus ``method`` (how the numerics were perturbed).

``floors(...)`` maps each measurement variant (stat @ corpus : ctx) to its floor value:
``{"model", "method", "value", "ci_low", "ci_high" (kld_mean and ln_ppl_ratio only),
"n_windows"}``. Rows against another reference are ignored (a warning); with several rows
for one corpus x ctx x scoring the one with the largest mean KLD (the most conservative
floor) is used. ``overlap(...)`` flags, per variant and quant, whether the quant's figure
cannot be told above the floor: its interval (or value, where it has none) reaches the
floor's interval (or value): q_low <= f_high for lower-is-better statistics, q_high >=
f_low for ``same_top1``. NaN where either side is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from quantfid.analysis.correlation import direction

Combo = tuple[str, int | None, str]
CI_STATS = ("kld_mean", "ln_ppl_ratio")


def _f(v: Any) -> float | None:
    if v is None:
        return None
    x = float(v)
    return x if np.isfinite(x) else None


def pick_rows(rows: list[dict[str, Any]], ref: str, ok: Callable[[Any, Any], bool],
              warnings: list[str]) -> dict[Combo, dict[str, Any]]:
    """The floor row per (corpus, ctx, scoring): against ``ref``, selected, largest KLD."""
    out: dict[Combo, dict[str, Any]] = {}
    other = set()
    for r in rows:
        if r.get("reference") not in (None, ref):
            other.add(f"{r.get('model')} (against {r.get('reference')})")
            continue
        if not ok(r.get("corpus"), r.get("ctx")):
            continue
        combo = (str(r.get("corpus")), None if r.get("ctx") is None else int(r["ctx"]),
                 str(r.get("scoring")))
        have = out.get(combo)
        if have is None or (_f(r.get("kld_mean")) or 0.0) > (_f(have.get("kld_mean")) or 0.0):
            out[combo] = r
    if other:
        warnings.append("noise-floor rows against another reference ignored: "
                        + ", ".join(sorted(other)))
    return out


def floors(rows: dict[Combo, dict[str, Any]], variant_combos: dict[str, tuple[str, Combo]]
           ) -> dict[str, dict[str, Any]]:
    """Floor per variant key; ``variant_combos``: key -> (stat, combo)."""
    out: dict[str, dict[str, Any]] = {}
    for key, (stat, combo) in variant_combos.items():
        r = rows.get(combo)
        if r is None or _f(r.get(stat)) is None:
            continue
        ci = stat in CI_STATS
        out[key] = {"model": r.get("model"), "method": r.get("method"), "value": _f(r.get(stat)),
                    "ci_low": _f(r.get(f"{stat}_ci_low")) if ci else None,
                    "ci_high": _f(r.get(f"{stat}_ci_high")) if ci else None,
                    "n_windows": r.get("n_windows")}
    return out


def overlap(stat: str, value: np.ndarray, lo: np.ndarray | None, hi: np.ndarray | None,
            floor: dict[str, Any]) -> np.ndarray:
    """(Q,) 1.0 where a quant cannot be told above the floor, 0.0 where it can, NaN unknown."""
    fv = floor["value"]
    f_lo = floor["ci_low"] if floor.get("ci_low") is not None else fv
    f_hi = floor["ci_high"] if floor.get("ci_high") is not None else fv
    q_lo = np.where(np.isfinite(lo), lo, value) if lo is not None else value
    q_hi = np.where(np.isfinite(hi), hi, value) if hi is not None else value
    with np.errstate(invalid="ignore"):
        hit = (q_lo <= f_hi) if direction(stat) < 0 else (q_hi >= f_lo)
    return np.where(np.isfinite(value), hit.astype(np.float64), np.nan)
