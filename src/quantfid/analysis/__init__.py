"""Cohort analysis: do fidelity metrics tell you what the benchmarks would? (issue 5)

Entry points::

    from quantfid.analysis import run_all, verdict, analyze_table, make_cohort
    result = run_all(ws, k=None, band=0.99, n_boot=10000, rng=None, metric="kld_mean",
                     resolution=0.05, select=None)
    j = result.to_json()            # the stable JSON documented below
    print(verdict(result))          # or verdict(j): a short verdict quoting the numbers

``rng`` defaults to ``np.random.default_rng(0)``; ``metric`` picks the primary variant (a
stat such as ``"kld_mean"`` = its first corpus/ctx, or a variant key
``"kld_mean@wiki:512"``). The reference is never in the cohort, a router pair or a
failure-prediction subject. Direction: every fidelity metric is lower-is-better except
``same_top1``; scores are higher-is-better; so a useful lower-is-better metric has a
NEGATIVE rho with score.

Modules (one idea each): cohort (loading, section 1), correlation (rho / tau / p / CI),
bootstrap (vectorised resampling), silent_zone, power (minimum detectable effect),
resolution (is a zone able to see a drop that matters), robustness (BH), fdr,
decomposition, failure (per benchmark and stratified), van_elteren (rank tests), router,
cluster (cluster bootstrap over prompts), binomial (exact tests and CIs), selection,
noise_floor, numerics (backend / numerics caveats), cohort_table, table (table mode), run
(run_all), verdict, wording (plain-words names), synthetic (known-truth cohorts), outcomes
(``quantfid outcomes``), text (plain-text tables).

JSON of ``run_all(...).to_json()`` (all numbers plain floats/ints, missing = null)
================================================================================

Correlation entry (``CORR``), shared by every section and by table mode::

    {"metric": stat name (e.g. "kld_mean"; in table mode the column),
     "score": benchmark name | "mean" (table mode: the score column),
     "subset": "full" | "silent", "rule": null | "band" | "lowest_k" | "paired",
     "n": quants with both values in the subset,
     "rho": Spearman rho | null, "p": two-sided p | null,
     "p_method": "permutation-exact" (n <= 8, all n! permutations) |
                 "permutation-mc" (n = 9, 10: 100,000 permutations) |
                 "t-approximation" (n > 10; tau: asymptotic normal) | null,
     "ci_low", "ci_high": percentile bootstrap 95 % CI of rho over quants | null,
     "tau": Kendall tau-b | null, "tau_p": its p (same method) | null,
     "corpus": corpus label | null, "ctx": context length | null}

Top level: ``cohort, correlations, silent_zone, resolution, robustness, decomposition,
failure_prediction, router``.

``cohort``::

    {"reference": id, "quants": [ids in cohort order],
     "variants": [{"key": "kld_mean@wiki:512", "stat", "corpus", "ctx"}],
     "scores": [benchmark names..., "mean"], "reference_scores": {score: accuracy},
       ("mean" = unweighted mean of the benchmark accuracies, leaving out "<task>:<variant>"
        benchmarks such as "arc:acc_norm" whose "<task>" is present: each prompt once)
     "benchmarks": [{"benchmark" (a benchmark or "mean": its prompts pooled), "n",
                     "reference_accuracy", "discordance_rate" (median (G+L)/N over quants),
                     "discordant", "mde_paired", "mde_unpaired", "method"}],
     "settings": {"metric", "primary" (variant key), "band", "k": {score: k},
                  "k_automatic": bool, "band_threshold": {score: band x reference score},
                  "alpha", "n_boot", "resolution_threshold"},
     "noise_floor": {variant key: {"model", "method", "value", "ci_low", "ci_high",
                                   "n_windows"}}  (from the workspace table ``noise_floor``),
     "numerics": {"reference": NUMERICS, "warnings": [str]},
     "selection": {"models", "variants" ([corpus, ctx] pairs), "benchmarks"} (null = all),
     "rows": [{"model", "bits_per_weight", "bytes", "numerics": NUMERICS,
               "metrics": {variant key: {"value", "ci_low", "ci_high",
                                         "ci_method" ("window-bootstrap" |
                                           "moving-block-bootstrap" | "token-bootstrap" | null),
                                         "within_noise_floor" (bool | null)}},
               "scores": {score: {"n", "accuracy", "ci_low", "ci_high"}}}],
     "warnings": [str]}
    NUMERICS = {"backend", "numerics", "dtype", "device"} (Model ``extra``; null = not recorded)

``correlations``: [CORR] for every variant x every score x (full, silent/paired,
silent/band, silent/lowest_k), score-major, then subset, then variant.

``silent_zone``: ``{score: {"paired": [ids], "band": [ids], "lowest_k": [ids]}}`` for
each benchmark and "mean" (ids in cohort order).

``resolution``::

    {"threshold": 0.05, "power": 0.8, "method": str,
     "scores": {score: {rule: {"score", "rule", "members", "n_members", "cohort_size",
                               "status" ("resolved" | "unresolved" | "empty" | "unknown"),
                               "reasons" (["whole cohort", "mde above threshold",
                                           "no discordant prompts", "no drop is detectable"]),
                               "n_prompts", "reference_accuracy", "discordance_rate",
                               "discordant", "mde", "mde_relative", "threshold",
                               "prompts_needed"}}}}

``robustness``::

    {"family": str, "alpha": 0.05,
     "rows": [CORR + {"p_bh": Benjamini-Hochberg adjusted p within its family}],
     "summary": [{"score", "subset", "rule", "n_variants", "n_defined",
                  "oriented_rho_min", "oriented_rho_median", "oriented_rho_max"
                  (rho, or -rho for same_top1: negative = agrees with score),
                  "n_p_below_alpha", "n_bh_below_alpha", "n_ci_excludes_zero"}]}

``decomposition``::

    {"rows": [{"model", "benchmark", "n", "gains", "losses", "volume",
               "direction" (G/V | null), "score_delta" (score_q - score_ref),
               "mcnemar_p", "identity_holds"}],
     "composite": [{"model", "volume_sum", "flip_rate_mean", "gains", "losses",
                    "net_direction" ((G-L)/V pooled | null)}],
     "identity_holds": bool (all rows),
     "correlations": [CORR + {"quantity": "volume" | "net_direction",
                              "benchmark": benchmark | "composite"}]}
    (in these CORR entries "score" repeats the quantity; the metric is the primary one)

``failure_prediction``::

    {"rows": [{"model", "subset": "all" | "ref_passed",
               "benchmark": a benchmark | "stratified" | "pooled" (unstratified),
               "n_failed", "n_passed", "gm_failed", "gm_passed" (null when stratified),
               "ratio", "ci_low", "ci_high", "auroc", "mw_u" (null when stratified),
               "p", "p_method" ("mann-whitney" | "van-elteren"), "n_floored"}],
     "summary": {"all" | "ref_passed": {"n_models", "ratio_median", "ratio_min",
                 "ratio_max", "auroc_median", "n_p_below_0_05" (all stratified),
                 "pooled_ratio_median", "pooled_auroc_median",
                 "per_benchmark": {benchmark: {"ratio_median", "auroc_median"}}}},
     "kld_floor": 1e-10, "weights": str, "method": str}

``router``::

    {"pooled": STAT | null, "pooled_silent": STAT | null, "silent_rule": str | null,
     "per_benchmark": [{"benchmark"} + STAT], "pairs": [{"a", "b"} + STAT], "method": str}
    STAT = {"disagree", "ties", "decided", "correct", "accuracy", "ci_low", "ci_high", "p",
            "method" ("exact" per pair | "cluster-bootstrap-t" | "exact-on-prompts" |
                      "cluster-bootstrap-percentile" pooled)}

Table mode (``analyze_table(...).to_json()``): exactly ``{"n", "excluded",
"correlations": [CORR], "silent_zone": {score: {"band", "lowest_k"}}}`` with
``excluded`` = ``[{"name", "missing": [columns]}]``.

``verdict(result).to_json()``: ``{"headline": str, "findings": [str], "caveats": [str],
"flags": {...}}`` (flags: ``metric, score, ranks_full_cohort, zone_status, silent_by_rule``
(null where unresolved or too few quants), ``headline_rule, router, router_silent,
failure_auroc_near_chance, noise_floor_overlaps``).
"""

from quantfid.analysis.cohort import Cohort, Variant, load_cohort
from quantfid.analysis.correlation import Correlation, RankStats, correlate, direction
from quantfid.analysis.outcomes import OutcomeRow, outcome_summary
from quantfid.analysis.run import AnalysisResult, analyze_cohort, run_all
from quantfid.analysis.selection import Selection
from quantfid.analysis.synthetic import SyntheticCohort, make_cohort
from quantfid.analysis.table import TableResult, analyze_table
from quantfid.analysis.verdict import Verdict, verdict

__all__ = [
    "AnalysisResult", "Cohort", "Correlation", "OutcomeRow", "RankStats", "Selection",
    "SyntheticCohort",
    "TableResult", "Variant", "Verdict", "analyze_cohort", "analyze_table", "correlate",
    "direction", "load_cohort", "make_cohort", "outcome_summary", "run_all", "verdict",
]
