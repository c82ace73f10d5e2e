"""The cohort: per quant its size, every fidelity variant and every benchmark score.

``load_cohort(ws)`` reads a workspace into a ``Cohort`` (numpy arrays, quants in
registration order, the reference kept apart); ``table.py`` builds the same object from a
table of per-quant aggregates. Everything downstream works on a ``Cohort``.

* Measurement variants: each stat column of ``VARIANT_STATS`` (those with a value for at
  least one quant) x each (corpus, ctx, scoring) of the ``fidelity`` table, stat-major, the
  (corpus, ctx, scoring) combinations sorted. When a workspace holds several scorings the
  variant's corpus label is ``"<corpus>/<scoring>"``. When per-prompt fidelity exists, one
  more variant ``kld_mean`` on corpus ``"prompts"`` (ctx None): the mean of the quant's
  per-prompt KLD means over every benchmark prompt. Fidelity rows measured against another
  reference than the workspace's are ignored (reported in ``warnings``).
* Scores: per benchmark (those the reference has outcomes for) the accuracy = passed / N
  over the reference's prompt set; ``"mean"`` = the unweighted mean of the per-benchmark
  accuracies (None unless the quant has every benchmark), leaving out ``<task>:<variant>``
  benchmarks (``arc:acc_norm``) whose ``<task>`` is present: the same prompts scored twice. A quant with outcomes for part
  of a benchmark's prompts, or for prompts the reference lacks, is a ``MismatchError``.
* Selection (``selection.Selection``): only the selected quants, (corpus, ctx) pairs and
  benchmarks are read; the rest of the workspace is ignored.
* Noise floor (``noise_floor``): per variant, the workspace's ``noise_floor`` table value
  and, per quant, whether its figure cannot be told above it.
* Numerics (``numerics``): per quant its backend, numerics, dtype and device (Model
  ``extra``), and the warnings when they change the reading.
* CIs: accuracy by the Wilson score 95 % interval; the mean over benchmarks by a normal
  approximation treating benchmarks as independent binomials,
  se = sqrt(sum_b p_b (1 - p_b) / N_b) / B; metric CIs as stored (``kld_mean_ci_low/high``,
  ``ln_ppl_ratio_ci_low/high``) with the method that made them (the row's ``ci_method``;
  for rows without that column: "moving-block-bootstrap" for one window, "window-bootstrap"
  for ten or more, else "unrecorded").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantfid.analysis import noise_floor as nf
from quantfid.analysis import numerics
from quantfid.analysis.binomial import wilson
from quantfid.analysis.selection import ALL, Selection, check_known
from quantfid.errors import MismatchError, QuantfidError
from quantfid.store.workspace import Workspace

VARIANT_STATS: tuple[str, ...] = (
    "kld_mean", "kld_median", "kld_p90", "kld_p95", "kld_p99", "kld_p99_9", "kld_max",
    "ppl_q", "ppl_ratio", "ln_ppl_ratio", "ppl_diff", "same_top1", "rms_dp",
    "rkld_mean", "jsd_mean",
)
CI_COLUMNS: tuple[str, ...] = ("kld_mean", "ln_ppl_ratio")
MEAN = "mean"
PROMPTS_CORPUS = "prompts"


@dataclass(frozen=True)
class Variant:
    """One measurement variant: a stat on one corpus at one context length."""

    stat: str
    corpus: str | None = None
    ctx: int | None = None

    @property
    def key(self) -> str:
        if self.corpus is None:
            return self.stat
        return f"{self.stat}@{self.corpus}" + ("" if self.ctx is None else f":{self.ctx}")

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "stat": self.stat, "corpus": self.corpus, "ctx": self.ctx}


@dataclass(frozen=True)
class PromptData:
    """Per-prompt outcomes and KLD on one global prompt axis (all benchmarks concatenated).

    ``bench[p]`` indexes ``benchmarks``; ``ref_passed`` (P,); ``passed``/``known`` (Q, P) for
    the quants; ``kld`` (Q, P) per-prompt KLD mean (NaN where not measured).
    """

    benchmarks: list[str]
    prompt_ids: list[str]
    bench: np.ndarray
    ref_passed: np.ndarray
    passed: np.ndarray
    known: np.ndarray
    kld: np.ndarray

    def aliases(self) -> np.ndarray:
        """(P,) True for the columns of ``<task>:<variant>`` (``arc:acc_norm``) when ``<task>``
        is present: the same prompts scored twice (their per-prompt KLD is the task's)."""
        own = set(mean_benchmarks(self.benchmarks))
        return np.asarray([b not in own for b in self.benchmarks], dtype=bool)[self.bench]

    def columns(self, benchmark: str) -> np.ndarray:
        return np.flatnonzero(self.bench == self.benchmarks.index(benchmark))

    @property
    def mean_benchmarks(self) -> list[str]:
        return mean_benchmarks(self.benchmarks)

    def mean_columns(self) -> np.ndarray:
        """Prompt columns of the benchmarks counted in ``"mean"`` (each prompt once)."""
        keep = [self.benchmarks.index(b) for b in self.mean_benchmarks]
        return np.flatnonzero(np.isin(self.bench, keep))


def mean_benchmarks(names: list[str]) -> list[str]:
    """Benchmarks counted in ``"mean"``: all but ``<task>:<variant>`` (e.g. ``arc:acc_norm``)
    when ``<task>`` itself is present, so no prompt is counted twice."""
    return [b for b in names if not (":" in b and b.split(":", 1)[0] in names)]


@dataclass(frozen=True)
class Cohort:
    reference: str | None
    quants: list[str]
    variants: list[Variant]
    values: np.ndarray  # (V, Q), NaN = missing
    scores: dict[str, np.ndarray]  # score name -> (Q,), NaN = missing
    ref_scores: dict[str, float | None]
    bits_per_weight: list[float | None] = field(default_factory=list)
    bytes: list[int | None] = field(default_factory=list)
    metric_ci: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    score_ci: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    score_n: dict[str, int] = field(default_factory=dict)
    prompts: PromptData | None = None
    warnings: list[str] = field(default_factory=list)
    metric_ci_method: dict[str, list[str | None]] = field(default_factory=dict)
    noise_floor: dict[str, dict[str, Any]] = field(default_factory=dict)
    numerics: list[dict[str, Any]] = field(default_factory=list)
    reference_numerics: dict[str, Any] = field(default_factory=dict)
    numerics_warnings: list[str] = field(default_factory=list)
    selection: Selection = ALL

    def floor_overlap(self, key: str) -> np.ndarray | None:
        """(Q,) 1 / 0 / NaN: the quant's figure cannot be told above the noise floor."""
        floor = self.noise_floor.get(key)
        if floor is None:
            return None
        v = next(i for i, var in enumerate(self.variants) if var.key == key)
        ci = self.metric_ci.get(key)
        return nf.overlap(self.variants[v].stat, self.values[v], ci[0] if ci else None,
                          ci[1] if ci else None, floor)

    def variant(self, metric: str) -> int:
        """Index of ``metric``: a variant key, else the first variant of that stat."""
        for i, v in enumerate(self.variants):
            if v.key == metric:
                return i
        for i, v in enumerate(self.variants):
            if v.stat == metric:
                return i
        known = ", ".join(v.key for v in self.variants) or "none"
        raise QuantfidError(f"no fidelity metric {metric!r} in this cohort (variants: {known})")

    def score_names(self) -> list[str]:
        return list(self.scores)


def _f(v: Any) -> float:
    return float("nan") if v is None else float(v)


@dataclass
class _Fidelity:
    variants: list[Variant]
    values: np.ndarray  # (V, Q)
    cis: dict[str, tuple[np.ndarray, np.ndarray]]
    ci_method: dict[str, list[str | None]]
    combos: dict[str, tuple[str, nf.Combo]]  # variant key -> (stat, (corpus, ctx, scoring))


def _fidelity_combos(cols: dict[str, list[Any]], n: int, ref: str, qidx: dict[str, int],
                     select: Selection, warnings: list[str],
                     where: str) -> dict[nf.Combo, dict[int, int]]:
    get = lambda c: cols.get(c, [None] * n)  # noqa: E731
    models, refs, corpora, ctxs, scorings = get("model"), get("reference"), get("corpus"), get("ctx"), get("scoring")
    check_known("corpus x ctx", select.variants,
                {(str(c), None if x is None else int(x)) for c, x in zip(corpora, ctxs, strict=True)},
                where)
    combos: dict[nf.Combo, dict[int, int]] = {}
    other_ref: set[str] = set()
    for r in range(n):
        if refs[r] is not None and refs[r] != ref:
            other_ref.add(f"{models[r]} (against {refs[r]})")
            continue
        if models[r] not in qidx or not select.variant_ok(corpora[r], ctxs[r]):
            continue
        combo = (str(corpora[r]), None if ctxs[r] is None else int(ctxs[r]), str(scorings[r]))
        rows = combos.setdefault(combo, {})
        if qidx[models[r]] in rows:
            raise MismatchError(f"{where}: two fidelity rows for model {models[r]!r}, corpus "
                                f"{combo[0]!r}, ctx {combo[1]}, scoring {combo[2]!r}")
        rows[qidx[models[r]]] = r
    if other_ref:
        warnings.append("fidelity rows against another reference ignored: " + ", ".join(sorted(other_ref)))
    return combos


def _load_fidelity(ws: Workspace, ref: str, quants: list[str], warnings: list[str],
                   select: Selection = ALL) -> _Fidelity:
    tbl = ws.read_table("fidelity")
    if tbl.num_rows == 0:
        check_known("corpus x ctx", select.variants, (), str(ws.path))
        return _Fidelity([], np.zeros((0, len(quants))), {}, {}, {})
    cols = tbl.to_pydict()
    n = tbl.num_rows
    combos = _fidelity_combos(cols, n, ref, {q: i for i, q in enumerate(quants)}, select,
                              warnings, str(ws.path))
    several = len({c[2] for c in combos}) > 1
    out = _Fidelity([], np.zeros((0, len(quants))), {}, {}, {})
    vals: list[np.ndarray] = []
    for stat in VARIANT_STATS:
        if stat not in cols:
            continue
        for combo in sorted(combos, key=lambda c: (c[0], -1 if c[1] is None else c[1], c[2])):
            v = np.full(len(quants), np.nan)
            for q, r in combos[combo].items():
                v[q] = _f(cols[stat][r])
            if not np.isfinite(v).any():
                continue
            label = f"{combo[0]}/{combo[2]}" if several else combo[0]
            var = Variant(stat, label, combo[1])
            out.variants.append(var)
            out.combos[var.key] = (stat, combo)
            vals.append(v)
            if stat in CI_COLUMNS and f"{stat}_ci_low" in cols:
                _load_ci(out, var.key, stat, cols, combos[combo], len(quants))
    out.values = np.array(vals) if vals else np.zeros((0, len(quants)))
    return out


def _inferred_ci_method(cols: dict[str, list[Any]], r: int) -> str:
    """A row written without ``ci_method``: one window can only be the moving-block bootstrap,
    ten or more the window bootstrap; otherwise the method was not recorded."""
    n = cols.get("n_windows", [None] * (r + 1))[r]
    if n == 1:
        return "moving-block-bootstrap"
    return "window-bootstrap" if n is not None and n >= 10 else "unrecorded"


def _load_ci(out: _Fidelity, key: str, stat: str, cols: dict[str, list[Any]],
             rows: dict[int, int], nq: int) -> None:
    lo = np.full(nq, np.nan)
    hi = np.full(nq, np.nan)
    method: list[str | None] = [None] * nq
    for q, r in rows.items():
        lo[q] = _f(cols[f"{stat}_ci_low"][r])
        hi[q] = _f(cols[f"{stat}_ci_high"][r])
        if np.isfinite(lo[q]):
            m = cols["ci_method"][r] if "ci_method" in cols else None
            method[q] = str(m) if m is not None else _inferred_ci_method(cols, r)
    out.cis[key] = (lo, hi)
    out.ci_method[key] = method


def _load_prompts(ws: Workspace, ref: str, quants: list[str],
                  warnings: list[str], select: Selection = ALL) -> PromptData | None:
    tbl = ws.read_table("outcomes")
    if tbl.num_rows == 0:
        check_known("benchmarks", select.benchmarks, (), str(ws.path))
        return None
    cols = tbl.select(["model", "benchmark", "prompt_id", "passed"]).to_pydict()
    models, benches, pids, passed = cols["model"], cols["benchmark"], cols["prompt_id"], cols["passed"]
    ref_rows = [r for r in range(len(models)) if models[r] == ref]
    check_known("benchmarks", select.benchmarks, {benches[r] for r in ref_rows}, str(ws.path))
    ref_rows = [r for r in ref_rows if select.benchmark_ok(benches[r])]
    if not ref_rows:
        return None
    benchmarks = sorted({benches[r] for r in ref_rows})
    ref_keys: dict[str, list[str]] = {b: [] for b in benchmarks}
    for r in ref_rows:
        ref_keys[benches[r]].append(str(pids[r]))
    key_index: dict[tuple[str, str], int] = {}
    bench_codes: list[int] = []
    prompt_ids: list[str] = []
    for bi, b in enumerate(benchmarks):
        for pid in sorted(set(ref_keys[b])):
            key_index[(b, pid)] = len(prompt_ids)
            prompt_ids.append(pid)
            bench_codes.append(bi)
    n_p = len(prompt_ids)
    qidx = {q: i + 1 for i, q in enumerate(quants)}
    qidx[ref] = 0
    out = np.zeros((len(quants) + 1, n_p), dtype=bool)
    known = np.zeros((len(quants) + 1, n_p), dtype=bool)
    extra: dict[tuple[str, str], int] = {}
    no_ref: set[str] = set()
    for r in range(len(models)):
        m = qidx.get(models[r])
        if m is None:
            continue
        if benches[r] not in ref_keys:
            if select.benchmark_ok(benches[r]):
                no_ref.add(str(benches[r]))
            continue
        p = key_index.get((benches[r], str(pids[r])))
        if p is None:
            extra[(models[r], benches[r])] = extra.get((models[r], benches[r]), 0) + 1
            continue
        if known[m, p]:
            raise MismatchError(f"{ws.path}: two outcomes for model {models[r]!r}, benchmark "
                                f"{benches[r]!r}, prompt {pids[r]!r}")
        known[m, p] = True
        out[m, p] = bool(passed[r])
    if no_ref:
        warnings.append(f"benchmarks without reference outcomes ignored: {', '.join(sorted(no_ref))}")
    bench = np.array(bench_codes, dtype=np.int64)
    for (model, b), cnt in extra.items():
        raise MismatchError(f"{ws.path}: model {model!r} has {cnt} outcomes on benchmark {b!r} for "
                            f"prompts the reference {ref!r} does not have")
    for bi, b in enumerate(benchmarks):
        sel = bench == bi
        for m in range(1, len(quants) + 1):
            k = int(known[m, sel].sum())
            if 0 < k < int(sel.sum()):
                miss = prompt_ids[int(np.flatnonzero(sel & ~known[m])[0])]
                raise MismatchError(
                    f"{ws.path}: model {quants[m - 1]!r} has {k} of the reference's {int(sel.sum())} "
                    f"prompts on benchmark {b!r} (e.g. no outcome for prompt {miss!r}); "
                    "re-run or re-ingest it on the same prompt set")
    kld = np.full((len(quants), n_p), np.nan)
    # a task's per-prompt KLD is also its <task>:<variant>'s (the same prompts scored twice)
    same_prompts = {b: (b, *(v for v in benchmarks if v.startswith(f"{b}:")))
                    for b in mean_benchmarks(benchmarks)}
    pf = ws.read_table("prompt_fidelity")
    if pf.num_rows:
        c = pf.select(["model", "benchmark", "prompt_id", "kld_mean"]).to_pydict()
        for r in range(pf.num_rows):
            m = qidx.get(c["model"][r])
            if m is None or m == 0:
                continue
            for b in same_prompts.get(c["benchmark"][r], (c["benchmark"][r],)):
                p = key_index.get((b, str(c["prompt_id"][r])))
                if p is not None:
                    kld[m - 1, p] = _f(c["kld_mean"][r])
    return PromptData(benchmarks, prompt_ids, bench, out[0], out[1:], known[1:], kld)


def scores_from_prompts(pd: PromptData) -> tuple[dict[str, np.ndarray], dict[str, float | None],
                                                 dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Per-benchmark and mean accuracies (quants, reference), their CIs and prompt counts."""
    q = pd.passed.shape[0]
    scores: dict[str, np.ndarray] = {}
    ref_scores: dict[str, float | None] = {}
    cis: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ns: dict[str, int] = {}
    var_sum = np.zeros(q)
    in_mean = pd.mean_benchmarks
    for b in pd.benchmarks:
        cols = pd.columns(b)
        n = cols.size
        full = pd.known[:, cols].all(axis=1)
        k = pd.passed[:, cols].sum(axis=1)
        acc = np.where(full, k / n, np.nan)
        lo, hi = wilson(k, n)
        scores[b] = acc
        cis[b] = (np.where(full, lo, np.nan), np.where(full, hi, np.nan))
        ref_scores[b] = float(pd.ref_passed[cols].mean())
        ns[b] = n
        if b in in_mean:
            var_sum = var_sum + acc * (1 - acc) / n
    mean = np.mean([scores[b] for b in in_mean], axis=0)
    se = np.sqrt(var_sum) / len(in_mean)
    scores[MEAN] = mean
    cis[MEAN] = (mean - 1.959963984540054 * se, mean + 1.959963984540054 * se)
    ref_scores[MEAN] = float(np.mean([float(ref_scores[b] or 0.0) for b in in_mean]))
    ns[MEAN] = int(pd.mean_columns().size)
    return scores, ref_scores, cis, ns


def load_cohort(ws: Workspace, select: Selection = ALL) -> Cohort:
    """Read the (selected part of the) workspace into a Cohort; the reference is never a member."""
    ref = ws.require_reference()
    all_quants = ws.models("quant")
    check_known("models", select.models, (m.id for m in all_quants), str(ws.path))
    quant_models = [m for m in all_quants if select.model_ok(m.id)]
    if not quant_models:
        raise QuantfidError(f"workspace {ws.path} has no quants to analyse")
    quants = [m.id for m in quant_models]
    warnings: list[str] = []
    fid = _load_fidelity(ws, ref.id, quants, warnings, select)
    variants, values = fid.variants, fid.values
    pdata = _load_prompts(ws, ref.id, quants, warnings, select)
    scores: dict[str, np.ndarray] = {}
    ref_scores: dict[str, float | None] = {}
    score_ci: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    score_n: dict[str, int] = {}
    if pdata is not None:
        scores, ref_scores, score_ci, score_n = scores_from_prompts(pdata)
        own = pdata.kld[:, ~pdata.aliases()]  # each prompt once (not again as :acc_norm)
        if np.isfinite(own).any():
            with np.errstate(invalid="ignore"):
                pk = np.where(np.isfinite(own).all(axis=1), np.nanmean(own, axis=1), np.nan)
            variants = [*variants, Variant("kld_mean", PROMPTS_CORPUS, None)]
            values = np.vstack([values, pk[None, :]]) if values.size else pk[None, :]
    else:
        warnings.append("no outcomes for the reference: no benchmark scores")
    floor_rows = nf.pick_rows(ws.rows("noise_floor"), ref.id, select.variant_ok, warnings)
    return Cohort(reference=ref.id, quants=quants, variants=variants, values=values,
                  scores=scores, ref_scores=ref_scores,
                  bits_per_weight=[m.bits_per_weight for m in quant_models],
                  bytes=[m.bytes for m in quant_models], metric_ci=fid.cis,
                  score_ci=score_ci, score_n=score_n, prompts=pdata, warnings=warnings,
                  metric_ci_method=fid.ci_method, noise_floor=nf.floors(floor_rows, fid.combos),
                  numerics=[numerics.info(m) for m in quant_models],
                  reference_numerics=numerics.info(ref),
                  numerics_warnings=numerics.warnings(quant_models), selection=select)
