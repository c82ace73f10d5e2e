"""Everything after the first screen and the plots: collapsed sections, each with its tables
(at most 13 columns, long ones cut short in report.md) and a link to the full CSV."""

from __future__ import annotations

from typing import Any

from quantfid import embedded
from quantfid.report.blocks import Block, Bullets, Details, Note, Para, fmt, table_from_rows
from quantfid.report.csvs import Dataset
from quantfid.report.verdict import VERDICT_RULES

MD_ROWS = 40
MAX_COLUMNS = 13


def _table(sets: dict[str, Dataset], name: str, columns: list[str], caption: str) -> list[Block]:
    if name not in sets:
        return []
    _, rows = sets[name]
    cols = [c for c in columns if any(c in r for r in rows)][:MAX_COLUMNS]
    return [table_from_rows(rows, cols, caption=caption, csv=f"csv/{name}.csv", md_rows=MD_ROWS)]


def _section(title: str, blocks: list[Block]) -> list[Block]:
    return [Details(title, tuple(blocks))] if blocks else []


def sections(a: dict[str, Any], sets: dict[str, Dataset]) -> list[Block]:
    dec = a.get("decomposition") or {}
    out: list[Block] = []
    out += _section("Near-reference zones of every score", _table(
        sets, "zones", ["score", "rule", "status", "n_members", "cohort_size", "n_prompts",
                        "discordance_rate", "mde", "mde_relative", "prompts_needed", "reasons"],
        "Per score and zone rule: members, the zone's median disagreement rate with the "
        "reference, its minimum detectable effect (absolute and relative to the reference's "
        "score), and whether it is resolved."))
    out += _section("Minimum detectable effect per benchmark", _table(
        sets, "mde", ["benchmark", "n", "reference_accuracy", "discordance_rate", "discordant",
                      "mde_paired", "mde_unpaired"],
        "Per benchmark, over all quants: the smallest accuracy drop a paired (McNemar) test "
        "detects at 80 % power at the median disagreement rate, and the unpaired figure."))
    out += _section("Every measurement variant", _table(
        sets, "variants", ["model", "variant", "value", "ci_low", "ci_high", "ci_method",
                           "within_noise_floor"],
        "Every fidelity statistic on every corpus and context per quant, with its interval and "
        "how it was computed."))
    out += _section("Noise floor", _table(
        sets, "noise_floor", ["variant", "value", "ci_low", "ci_high", "method", "model",
                              "n_windows"],
        "The reference against itself under perturbed numerics, per variant."))
    out += _section("Backend and numerics per quant", _table(
        sets, "cohort", ["model", "backend", "numerics", "dtype", "device"],
        "What produced each quant's figures."))
    out += _section("Every correlation", _table(
        sets, "correlations", ["metric", "corpus", "ctx", "score", "subset", "rule", "n", "rho",
                               "ci_low", "ci_high", "p", "p_method", "p_bh"],
        "Spearman rho (bootstrap 95 % interval over quants) of every variant with every score, "
        "full cohort and each zone; p_bh: Benjamini-Hochberg across variants."))
    out += _section("Robustness across measurement variants", _table(
        sets, "robustness", ["score", "subset", "rule", "n_variants", "n_defined",
                             "oriented_rho_min", "oriented_rho_median", "oriented_rho_max",
                             "n_p_below_alpha", "n_bh_below_alpha", "n_ci_excludes_zero"],
        "Per (score, subset, rule): the range of rho over variants (oriented: negative = agrees "
        "with the score) and how many variants see a significant link."))
    out += _section("Volume and direction of flips", [
        *_table(sets, "flips_composite", ["model", "volume_sum", "flip_rate_mean", "gains",
                                          "losses", "net_direction"],
                f"Flips against the reference over the benchmarks; score_q - score_ref = "
                f"V (2f - 1) / N holds exactly for every row: {fmt(dec.get('identity_holds'))}."),
        *_table(sets, "flip_correlations", ["quantity", "benchmark", "subset", "rule", "n",
                                            "rho", "ci_low", "ci_high", "p"],
                "Spearman of the primary statistic with flip volume and net direction."),
        *_table(sets, "flips", ["model", "benchmark", "n", "gains", "losses", "volume",
                                "direction", "score_delta", "mcnemar_p", "identity_holds"],
                "Per quant and benchmark.")])
    out += _section("Failure prediction per benchmark", _table(
        sets, "failure_prediction", ["model", "subset", "benchmark", "n_failed", "n_passed",
                                     "ratio", "ci_low", "ci_high", "auroc", "p", "p_method"],
        "Per quant: the failed/passed geometric-mean KLD ratio per benchmark, stratified "
        "(within benchmarks, weights n_f n_p / (n + 1); van Elteren test) and pooled "
        "(unstratified: mixes benchmark base rates with signal)."))
    out += _section("Router", [
        *_table(sets, "router_pooled", ["scope", "disagree", "ties", "decided", "correct",
                                        "accuracy", "ci_low", "ci_high", "p", "method"],
                "Pooled over pairs and per benchmark: studentized cluster bootstrap over prompts "
                "(pairs share prompts)."),
        *_table(sets, "router_pairs", ["a", "b", "disagree", "ties", "decided", "correct",
                                       "accuracy", "ci_low", "ci_high", "p"],
                "Per pair: exact Clopper-Pearson interval and binomial test against 50 %.")])
    return out


def method(provenance: dict[str, Any], embedded_ref: bool) -> list[Block]:
    blocks: list[Block] = [
        Para("Fidelity is measured token by token against the reference: KL(P_ref || P_quant) in "
             "nats from float32 log-softmax, llama.cpp's windows. Intervals for a corpus x context "
             "come from a bootstrap over windows when there are ten or more, else from a "
             "moving-block bootstrap within the windows with the block length chosen from the "
             "autocorrelation of per-token KLD (Politis-White). Benchmarks are scored per prompt; "
             "a quant's flips against the reference are gains G and losses L, and "
             "score_q - score_ref = (G - L) / N exactly."),
        Para("Near-reference (silent) zones, side by side: a paired test (exact McNemar) cannot "
             "tell the quant from the reference; its score is within a band of the reference's; "
             "or it is among the k quants with the lowest primary statistic (k automatic: the "
             "paired zone's size). A zone is only informative when its benchmark could have seen "
             "a drop that matters: its minimum detectable effect is stated and an unresolved zone "
             "gives no finding."),
        Para("The verdict is derived by these stated rules (quantfid.analysis.verdict):"),
        Bullets(VERDICT_RULES),
        Bullets(("Small cohorts and few prompts give wide intervals: read the intervals, not the "
                 "point values.",
                 "A zone is where the benchmark cannot tell quants from the reference, not where "
                 "they are equal.")),
    ]
    if embedded_ref:
        blocks.append(Note("Reference: " + embedded.CAVEAT))
    return [Details("Method and caveats", tuple(blocks))]


def _flat(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (d or {}).items() if not isinstance(v, (dict, list))}


def provenance_blocks(p: dict[str, Any]) -> list[Block]:
    mach = p.get("machine", {})
    blocks: list[Block] = [Bullets(tuple(s for s in (
        f"quantfid {p.get('tool_version')}, report created {p.get('created')}",
        f"reference: {p.get('reference')}",
        f"machine: {mach.get('cpu') or mach.get('machine')}, {mach.get('cpu_count')} CPUs, "
        f"Python {mach.get('python')}, torch {mach.get('torch_version', '—')}"
        + (f" (float32 CPU products: {mach['cpu_float32_gemm']})"
           if mach.get("cpu_float32_gemm") else ""),
        f"seeds: {fmt(p.get('seeds'))}" if p.get("seeds") else "",
    ) if s))]
    timings, cpu = p.get("timings_s") or {}, p.get("cpu_s") or {}
    if timings:
        blocks.append(table_from_rows(
            [{"stage": k, "wall s": v, **({"cpu s": cpu.get(k)} if cpu else {})}
             for k, v in timings.items()],
            caption="Time per stage (wall clock; cpu: process CPU time over all threads)."))
    inputs = p.get("inputs", {})
    if inputs.get("models"):
        blocks.append(table_from_rows(inputs["models"], ["id", "role", "source", "scheme",
                                                         "bits_per_weight", "hash"],
                                      caption="Models (hash: sha256 of the weights file, or of "
                                              "the recipe and its reference)."))
    for what, key in (("Corpora", "corpora"), ("Benchmarks", "benchmarks")):
        items = inputs.get(key) or {}
        if items:
            rows = [{key[:-1] if key != "corpora" else "corpus": k, **_flat(v)}
                    for k, v in items.items()]
            cols: list[str] = list(dict.fromkeys(c for r in rows for c in r))
            blocks.append(table_from_rows(rows, cols[:MAX_COLUMNS], caption=f"{what}."))
    return [Details("Provenance", tuple(blocks))]
