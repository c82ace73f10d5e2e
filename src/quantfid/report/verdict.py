"""The report's verdict: ``quantfid.analysis.verdict`` applied to the analysis JSON.

One source of truth: the analysis module states the thresholds (full-cohort rho CI on the
useful side and p < 0.05; silent zone unless its rho has p < 0.05 and a CI excluding 0;
router by its Clopper-Pearson CI against 50 %; failure prediction by the median ratio and
AUROC) and quotes the numbers; the report puts it first and ``summary.json`` keeps it.
"""

from __future__ import annotations

from typing import Any

from quantfid.analysis import verdict as analysis_verdict
from quantfid.analysis.verdict import Verdict

__all__ = ["VERDICT_RULES", "Verdict", "verdict"]


def _rules() -> tuple[str, ...]:
    """The threshold rules, as the analysis module documents them (its docstring bullets)."""
    import importlib

    # the package re-exports the function under the module's name: import the module itself
    doc = importlib.import_module("quantfid.analysis.verdict").__doc__ or ""
    items: list[str] = []
    for line in doc.splitlines():
        s = line.strip()
        if s.startswith("* "):
            items.append(s[2:])
        elif items and s:
            items[-1] += " " + s
        elif items:
            break
    return tuple(i.replace("``", "") for i in items)


VERDICT_RULES: tuple[str, ...] = _rules()


def verdict(analysis: dict[str, Any]) -> Verdict:
    """The verdict of an analysis result (the JSON of ``run_all(ws).to_json()``)."""
    return analysis_verdict(analysis)
