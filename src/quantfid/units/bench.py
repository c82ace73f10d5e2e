"""The benchmark unit: outcomes and per-prompt fidelity of one model on one prompt set.

Outcomes (choice prompts): ``passed`` = lm-eval ``acc`` (argmax of the summed log-prob of each
choice) under ``<benchmark>``, and ``acc_norm`` (argmax of summed log-prob / choice length in
characters, as lm-eval) under ``<benchmark>:acc_norm``; ``score`` holds the same 0/1.

Per-prompt fidelity, from the same passes: each prompt's scored tokens are the same ids for
every model, the prompt after its first token then the gold answer (``gold_ids()[1:]``).
The reference's rows at those positions go once to a compact prompt store
(:mod:`quantfid.bench.refstore`); a quant's are compared with them token by token
(:class:`quantfid.reducers.CompareReducer`: KL(P_ref || P_quant) in nats and the rest) and
averaged per prompt (:func:`quantfid.units.run.token_means`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantfid._version import __version__
from quantfid.backends.base import Backend, require
from quantfid.metrics.types import TokenMetrics
from quantfid.records import Outcome, PromptFidelity
from quantfid.reducers import CompactRowsReducer, CompareReducer
from quantfid.store.workspace import Part
from quantfid.units.defs import BenchUnit
from quantfid.units.run import UnitContext, UnitOutput, token_means


def _gold_targets(golds: list[np.ndarray | None]) -> Any:
    def targets(window: int, pos0: int, n: int) -> np.ndarray:
        g = golds[window]
        assert g is not None
        return np.asarray(g[pos0 + 1:pos0 + 1 + n], dtype=np.int64)

    return targets


def prompt_hash(prompt: Any) -> str:
    from quantfid.hashing import hash_json

    return hash_json(prompt.to_json())[:16]


def _outcomes(unit: BenchUnit, model_id: str, i: int, loglik: np.ndarray) -> list[Outcome]:
    p = unit.ps.prompts[i]
    lens = np.array([float(len(c)) for c in p.choices])
    out = []
    for name, pick in ((unit.ps.benchmark, int(np.argmax(loglik))),
                       (f"{unit.ps.benchmark}:acc_norm", int(np.argmax(loglik / lens)))):
        ok = pick == p.gold
        out.append(Outcome(model=model_id, benchmark=name, prompt_id=p.id, passed=ok,
                           score=float(ok), source="quantfid", source_version=__version__,
                           prompt_hash=prompt_hash(p)))
    return out


def run_bench(unit: BenchUnit, backend: Backend, ctx: UnitContext) -> UnitOutput:
    """Score every prompt (see the module docstring); the reference stages its prompt store."""
    require(backend, "loglikelihood")
    reqs = list(unit.ps.requests)
    golds = [r.gold_ids() if r.gold is not None else None for r in reqs]
    targets = _gold_targets(golds)
    is_ref = unit.ref is None
    reducer: Any
    if is_ref:
        reducer = CompactRowsReducer(targets, np.random.default_rng(0))
    else:
        from quantfid.bench.refstore import PromptRefStore, PromptRows

        store = PromptRefStore(ctx.resolve(unit.store_path))
        reducer = CompareReducer(PromptRows(store, [r.id for r in reqs],
                                            [g if g is not None else np.zeros(0, np.int64)
                                             for g in golds]), targets, 0)
    mid = unit.model.id
    outcomes: dict[int, list[Outcome]] = {}
    reduced: dict[int, list[Any]] = {}
    for i, res in backend.loglikelihood(reqs, reducer, batch_size=unit.batch_size):  # type: ignore[attr-defined]
        if unit.ps.outcomes:
            outcomes[i] = _outcomes(unit, mid, i, res.loglik)
        if reqs[i].gold is not None:
            reduced[i] = res.reduced
    out = UnitOutput(entries={"benchmarks": {unit.ps.benchmark: {
        **unit.ps.info, "n": len(reqs), "prompt_set_hash": unit.ps.set_hash,
        "kind": "choice" if unit.ps.outcomes else "prompts",
        "tokens_per_prompt": unit.ps.forward_tokens / max(len(reqs), 1)}}})
    if unit.ps.outcomes:
        rows = [o for i in range(len(reqs)) for o in outcomes[i] if ":" not in o.benchmark]
        rows += [o for i in range(len(reqs)) for o in outcomes[i] if ":" in o.benchmark]
        out.parts.append(Part("outcomes", unit.part, [o.to_dict() for o in rows], unit.hash))
    if is_ref:
        out.arrays[unit.store_path] = _stage_store(unit, backend, ctx, reqs, golds, reduced)
    else:
        fid = [_prompt_row(mid, unit.ps.benchmark, reqs[i].id, reduced[i])
               for i in range(len(reqs)) if i in reduced]
        out.parts.append(Part("prompt_fidelity", unit.part, [r.to_dict() for r in fid], unit.hash))
        out.summary["kld_mean"] = float(np.mean([r.kld_mean for r in fid])) if fid else None
    _summarize(out, unit, outcomes)
    return out


def _prompt_row(model: str, benchmark: str, pid: str, parts: list[Any]) -> PromptFidelity:
    """Means over the prompt's tokens (a server's top-K estimate: its TokenMetrics)."""
    tms = [p.metrics if hasattr(p, "kld_bound_low") else p for p in parts]
    return token_means(model, benchmark, pid, TokenMetrics.concat(tms))


def _summarize(out: UnitOutput, unit: BenchUnit, outcomes: dict[int, list[Outcome]]) -> None:
    out.summary.update(model=unit.model.id, benchmark=unit.ps.benchmark,
                       n=len(unit.ps.requests))
    if outcomes:
        out.summary["acc"] = float(np.mean([o[0].passed for o in outcomes.values()]))
        out.summary["acc_norm"] = float(np.mean([o[1].passed for o in outcomes.values()]))


def _stage_store(unit: BenchUnit, backend: Backend, ctx: UnitContext, reqs: list[Any],
                 golds: list[np.ndarray | None], reduced: dict[int, list[Any]]) -> Any:
    """Write the reference's prompt store (prompts grouped by gold length) under staging."""
    from quantfid.bench.refstore import PromptRefWriter
    from quantfid.store.rows import CompactRows

    staged = ctx.stage / f"prompts-{unit.hash[:16]}"
    writer = PromptRefWriter(staged, model_id=unit.model.id, model_hash=unit.model.content,
                             tokenizer_id=backend.tokenizer_id(), vocab_size=backend.vocab_size(),
                             prompt_set_hash=unit.ps.set_hash)
    order = sorted(reduced, key=lambda i: (len(golds[i]), i))  # type: ignore[arg-type]
    try:
        for i in order:
            writer.append(reqs[i].id, golds[i], CompactRows.concat(reduced[i]))  # type: ignore[arg-type]
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return staged
