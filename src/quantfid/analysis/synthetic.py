"""Synthetic cohorts with a known truth, for tests and benchmarks (seeded ``rng``).

``make_cohort(rng, kind=...)`` builds a reference, ``n_quants`` quants with true KLDs
log-spaced over ``kld_range`` (registered in a shuffled order), fidelity rows for every
``(corpus, ctx)`` (all ``STATS_KEYS`` present, each a noisy monotone function of the KLD),
per-prompt outcomes on ``benchmarks`` (``n_prompts`` prompts split evenly) and per-prompt
KLD. ``SyntheticCohort.write(ws)`` stores all of it in a workspace.

Kinds:

* ``"volume"``: displacement is not direction. A quant flips a share
  ``r = 0.3 sqrt(KLD)`` of the prompts (volume grows with KLD); the direction of a flip is
  a coin toss (P(gain) = f = 1/2) for KLD <= ``knee`` and turns towards losses above it
  (f = knee / (2 KLD)). So the full cohort shows a strong negative KLD-score correlation,
  while near the baseline the score differences are pure noise: the silent-zone
  correlation collapses. Per-prompt KLD is the quant's level times LogNormal(0, 0.5) noise,
  x 1.15 on flipped prompts (it sees volume, not direction).
* ``"direction"`` (the reverse construction): the quant of KLD rank i (0 = lowest) loses
  exactly round(``loss_step`` x i) prompts of each benchmark (chosen among those the
  reference passes) and gains none, so the score falls strictly with KLD everywhere, the
  silent zone included. Per-prompt KLD is x 4 on the lost prompts, so it predicts failures
  and routes well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from quantfid.metrics.types import STATS_KEYS
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace

Kind = Literal["volume", "direction"]
PPL_REF = 12.0


@dataclass(frozen=True)
class SyntheticCohort:
    reference: Model
    quants: list[Model]
    kld: np.ndarray  # true KLD per quant, in the order of ``quants``
    fidelity: list[dict[str, object]]
    outcomes: list[Outcome]
    prompt_fidelity: list[PromptFidelity]

    def write(self, ws: Workspace) -> None:
        ws.add_model(self.reference)
        for q in self.quants:
            ws.add_model(q)
        for row in self.fidelity:
            ws.write_part("fidelity", f"{row['model']}@{row['corpus']}:{row['ctx']}", [row])
        by_model: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            by_model.setdefault(o.model, []).append(o)
        for m, os_ in by_model.items():
            ws.add_outcomes(m, os_)
        pf: dict[str, list[PromptFidelity]] = {}
        for p in self.prompt_fidelity:
            pf.setdefault(p.model, []).append(p)
        for m, ps in pf.items():
            ws.add_prompt_fidelity(m, ps)


def _fidelity_row(rng: np.random.Generator, model: str, ref: str, corpus: str, ctx: int,
                  kld: float) -> dict[str, object]:
    def jit(s: float = 0.03) -> float:
        return float(1.0 + s * rng.standard_normal())

    k = kld * jit()
    ln_ratio = 0.6 * k * jit()
    se = 0.02 * k
    row: dict[str, object] = dict.fromkeys(STATS_KEYS)
    row.update({
        "model": model, "reference": ref, "corpus": corpus, "corpus_hash": f"h-{corpus}",
        "ctx": ctx, "scoring": "all", "n_windows": 100, "n_tokens": 100 * ctx,
        "kld_mean": k, "kld_mean_se": se, "kld_median": 0.4 * k * jit(),
        "kld_p90": 2.2 * k * jit(), "kld_p95": 3.0 * k * jit(), "kld_p99": 6.0 * k * jit(),
        "kld_p99_9": 12.0 * k * jit(), "kld_max": 30.0 * k * jit(0.1), "kld_min": 0.0,
        "rkld_mean": 1.1 * k * jit(), "jsd_mean": 0.25 * k * jit(),
        "ppl_q": PPL_REF * float(np.exp(ln_ratio)), "ppl_ref": PPL_REF,
        "ln_ppl_ratio": ln_ratio, "ln_ppl_ratio_se": 0.05 * abs(ln_ratio) + 1e-4,
        "ppl_ratio": float(np.exp(ln_ratio)), "ppl_diff": PPL_REF * float(np.expm1(ln_ratio)),
        "same_top1": float(1.0 - 0.25 * np.sqrt(k) * jit()), "same_top1_se": 0.001,
        "dp_mean": -0.01 * k, "rms_dp": float(0.12 * np.sqrt(k) * jit()),
        "kld_mean_ci_low": k - 2 * se, "kld_mean_ci_high": k + 2 * se,
        "ln_ppl_ratio_ci_low": ln_ratio - 0.1 * abs(ln_ratio) - 2e-4,
        "ln_ppl_ratio_ci_high": ln_ratio + 0.1 * abs(ln_ratio) + 2e-4,
    })
    return row


def make_cohort(rng: np.random.Generator, *, kind: Kind = "volume", n_quants: int = 41,
                n_prompts: int = 2000, benchmarks: tuple[str, ...] = ("arc", "hella", "wino", "code"),
                ref_accuracy: tuple[float, ...] = (0.7, 0.6, 0.75, 0.55),
                corpora: tuple[tuple[str, int], ...] = (("wiki", 512),),
                kld_range: tuple[float, float] = (1e-3, 1.0), knee: float = 0.02,
                loss_step: float = 1.0) -> SyntheticCohort:
    """A synthetic cohort of the given ``kind`` (see the module docstring)."""
    ref = Model("ref", role="reference", format="synthetic", scheme="bf16", bits_per_weight=16.0,
                bytes=270_000_000)
    klds = np.geomspace(kld_range[0], kld_range[1], n_quants)
    order = rng.permutation(n_quants)
    names = [f"q{i:02d}" for i in range(n_quants)]
    quants = [Model(names[j], role="quant", format="synthetic", scheme=f"s{j}",
                    bits_per_weight=float(16.0 / (1.0 + 3 * klds[j] ** 0.3)),
                    bytes=int(270_000_000 / (1.0 + 3 * klds[j] ** 0.3))) for j in order]
    kld_of = {names[j]: float(klds[j]) for j in range(n_quants)}
    rank_of = {names[j]: j for j in range(n_quants)}
    fidelity = [_fidelity_row(rng, m.id, ref.id, c, ctx, kld_of[m.id]) for m in quants
                for c, ctx in corpora]
    per_bench = n_prompts // len(benchmarks)
    outcomes: list[Outcome] = []
    pfs: list[PromptFidelity] = []
    for bi, bench in enumerate(benchmarks):
        pids = [f"{bench}-{i:05d}" for i in range(per_bench)]
        acc = ref_accuracy[bi % len(ref_accuracy)]
        ref_pass = rng.random(per_bench) < acc
        outcomes += [Outcome(ref.id, bench, p, bool(v)) for p, v in zip(pids, ref_pass, strict=True)]
        n_pass = int(ref_pass.sum())
        n_fail = per_bench - n_pass
        for m in quants:
            k = kld_of[m.id]
            if kind == "volume":
                r = 0.3 * np.sqrt(k)
                f = 0.5 if k <= knee else 0.5 * knee / k
                p_loss = min(1.0, (1 - f) * r * per_bench / max(n_pass, 1))
                p_gain = min(1.0, f * r * per_bench / max(n_fail, 1))
                u = rng.random(per_bench)
                flip = np.where(ref_pass, u < p_loss, u < p_gain)
                boost = 1.15
            else:
                n_lost = min(n_pass, round(loss_step * rank_of[m.id]))
                flip = np.zeros(per_bench, dtype=bool)
                flip[rng.choice(np.flatnonzero(ref_pass), size=n_lost, replace=False)] = True
                boost = 4.0
            passed = ref_pass ^ flip
            pk = k * np.exp(0.5 * rng.standard_normal(per_bench)) * np.where(flip, boost, 1.0)
            outcomes += [Outcome(m.id, bench, p, bool(v)) for p, v in zip(pids, passed, strict=True)]
            ntok = rng.integers(20, 200, size=per_bench)
            pfs += [PromptFidelity(m.id, bench, p, int(nt), float(x), float(3 * x), float(x * nt))
                    for p, x, nt in zip(pids, pk, ntok, strict=True)]
    return SyntheticCohort(ref, quants, np.array([kld_of[m.id] for m in quants]), fidelity,
                           outcomes, pfs)
