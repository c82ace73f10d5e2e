"""Plain-words names for the verdict and the report: statistics, scores, zone rules, numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

STAT_NAMES: dict[str, str] = {
    "kld_mean": "mean KLD", "kld_median": "median KLD", "kld_p90": "90th-percentile KLD",
    "kld_p95": "95th-percentile KLD", "kld_p99": "99th-percentile KLD",
    "kld_p99_9": "99.9th-percentile KLD", "kld_max": "maximum KLD",
    "ppl_q": "perplexity", "ppl_ratio": "perplexity ratio", "ln_ppl_ratio": "log perplexity ratio",
    "ppl_diff": "perplexity difference", "same_top1": "top-1 agreement", "rms_dp": "RMS Δp",
    "rkld_mean": "mean reverse KLD", "jsd_mean": "mean Jensen-Shannon divergence",
}


def stat_name(stat: str) -> str:
    return STAT_NAMES.get(stat, stat)


def where(corpus: Any, ctx: Any) -> str:
    """``"on prose, 512-token windows"``, ``"on the benchmark prompts"``, or ``""``."""
    if corpus is None:
        return ""
    if corpus == "prompts":
        return "on the benchmark prompts"
    return f"on {corpus}" + ("" if ctx is None else f", {ctx}-token windows")


def metric_label(stat: str, corpus: Any = None, ctx: Any = None) -> str:
    w = where(corpus, ctx)
    return stat_name(stat) + (f" ({w})" if w else "")


def score_label(score: str) -> str:
    if score == "mean":
        return "the mean benchmark score"
    return f"the {score}" if "score" in score.lower() else f"the {score} score"


def rule_label(rule: str, *, band: float | None = None, k: int | None = None,
               metric: str = "KLD", best: str = "lowest") -> str:
    """Who is in a zone, in plain words."""
    if rule == "paired":
        return "the quants a paired test cannot tell from the reference"
    if rule == "band":
        if band is None:
            return "the quants scoring within the band of the reference"
        return f"the quants scoring within {100 * (1 - band):.3g} % of the reference"
    if rule == "lowest_k":
        return f"the {k if k is not None else 'k'} quants with the {best} {metric}"
    return rule


def short_rule(rule: str) -> str:
    """Column / legend name of a zone rule."""
    return {"paired": "paired test", "band": "score band", "lowest_k": "lowest KLD"}.get(rule, rule)


def num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def pct(x: float | None, digits: int | None = None) -> str:
    """A fraction as a percentage: whole percent, one decimal below 10 % (none if it is 0)."""
    if x is None:
        return "n/a"
    d = digits if digits is not None else (1 if abs(x) < 0.1 else 0)
    text = f"{100 * x:.{d}f}"
    if digits is None and "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} %"


def capital(text: str) -> str:
    """The text with its first letter upper-case (the rest unchanged)."""
    return text[:1].upper() + text[1:]


def interval(lo: float | None, hi: float | None,
             fmt: Callable[[float], str] = lambda v: f"{v:.2f}") -> str:
    if lo is None or hi is None:
        return "no interval"
    return f"95 % interval {fmt(lo)} to {fmt(hi)}"


def count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
