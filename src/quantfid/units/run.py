"""The unit functions: one per kind of work, the same whichever command (or worker) runs it.

Each takes the unit, an open backend and a :class:`UnitContext` (where to read reference
stores, where to stage new arrays) and returns a :class:`UnitOutput`: table parts, model
records and manifest entries, and staged array directories. The unit writes nothing into the
workspace itself: the driver commits outputs (:func:`commit_output`), so a worker on another
machine returns the same object and the workspace has one writer.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.backends.base import Backend, require
from quantfid.metrics.types import STATS_KEYS, TokenMetrics
from quantfid.records import Model
from quantfid.reducers import CompactRowsReducer, CompareReducer, ReferenceRows, window_targets
from quantfid.store.workspace import Part, Workspace
from quantfid.units.defs import FidelityUnit, ReferenceUnit, Unit

TOKEN_FIELDS = ("kld", "same_top1", "ref_top1_prob", "rkld", "jsd", "nll_ref", "nll_q", "dp",
                "top5_overlap", "top10_overlap")
CI_KEYS = ("kld_mean_ci_low", "kld_mean_ci_high", "ln_ppl_ratio_ci_low", "ln_ppl_ratio_ci_high")
HEAD = ("model", "reference", "corpus", "corpus_hash", "ctx", "scoring", "n_windows")


@dataclass
class UnitContext:
    """workspace: where reference stores are read; stage: where new arrays are built (a
    directory on the workspace's file system, so the driver can move them in)."""

    workspace: Path
    stage: Path
    progress: bool = False

    def resolve(self, rel: str) -> Path:
        return self.workspace / rel


@dataclass
class UnitOutput:
    """What a unit produced. arrays: workspace-relative path -> staged directory."""

    parts: list[Part] = field(default_factory=list)
    models: list[Model] = field(default_factory=list)
    entries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def commit_output(ws: Workspace, out: UnitOutput) -> None:
    """Move a unit's staged arrays into the workspace, then store its parts and manifest
    entries together (``Workspace.commit``). Arrays first: a part never refers to data that
    is not there yet."""
    for rel, staged in out.arrays.items():
        dest = ws.path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
    ws.commit(out.parts, out.models, out.entries)


def run_unit(unit: Unit, backend: Backend, ctx: UnitContext, record: Model | None) -> UnitOutput:
    """Run ``unit`` on ``backend`` (``record``: the model's workspace record; None for a model
    that is not a cohort member, such as the noise-floor twin)."""
    t0 = time.perf_counter()
    if isinstance(unit, ReferenceUnit):
        out = run_reference(unit, backend, ctx)
    elif isinstance(unit, FidelityUnit):
        out = run_fidelity(unit, backend, ctx)
    else:
        from quantfid.units.bench import run_bench

        out = run_bench(unit, backend, ctx)
    if record is not None:
        out.models.append(record)
    out.seconds = time.perf_counter() - t0
    return out


# ---- reference ------------------------------------------------------------------------------
def run_reference(unit: ReferenceUnit, backend: Backend, ctx: UnitContext) -> UnitOutput:
    """The reference over every window into a compact (or full) store, staged."""
    from quantfid.reducers import FullRows
    from quantfid.store.compact import CompactStoreWriter
    from quantfid.store.full import FullStoreWriter

    require(backend, "score")
    w = unit.cw.windows
    staged = ctx.stage / f"ref-{unit.hash[:16]}"
    kw: dict[str, Any] = {"model_id": backend.info.id, "tokenizer_id": backend.tokenizer_id(),
                          "vocab_size": backend.vocab_size(), "ctx": w.n_ctx,
                          "scoring": w.scoring, "model_hash": unit.model.content,
                          "corpus_hash": unit.cw.corpus_hash, "overwrite": True}
    compact = unit.store == "compact"
    writer: Any = CompactStoreWriter(staged, **kw) if compact else FullStoreWriter(staged, **kw)
    reducer: Any = (CompactRowsReducer(window_targets(w.tokens, w.first),
                                       np.random.default_rng(0), **writer.settings())
                    if compact else FullRows())
    chunks: list[Any] = []
    cur = 0
    with writer:
        for win, res in backend.score_windows(w.ids, w.first, w.n_ctx - 1, reducer,  # type: ignore[attr-defined]
                                              batch_size=unit.batch_size):
            if win != cur:
                _append(writer, compact, chunks, w.tokens[cur])
                chunks, cur = [], win
            chunks.append(res)
        _append(writer, compact, chunks, w.tokens[cur])
    return UnitOutput(arrays={unit.path: staged},
                      entries={"corpora": {unit.cw.corpus: {"hash": unit.cw.corpus_hash,
                                                            **unit.cw.info}}})


def _append(writer: Any, compact: bool, chunks: list[Any], tokens: np.ndarray) -> None:
    from quantfid.store.rows import CompactRows

    if compact:
        writer.append_rows(CompactRows.concat(chunks), tokens)
    else:
        import torch

        writer.append(torch.cat(chunks).numpy(), tokens)


# ---- fidelity -------------------------------------------------------------------------------
def _store_path(unit: FidelityUnit, ctx: UnitContext) -> Path:
    if isinstance(unit.ref, ReferenceUnit):
        return ctx.resolve(unit.ref.path)
    return unit.ref.path


def run_fidelity(unit: FidelityUnit, backend: Backend, ctx: UnitContext) -> UnitOutput:
    """A model against the reference store over every window: the ``tokens`` and summary
    parts (KL(P_ref || P_model) in nats and the rest, ``quantfid.metrics``)."""
    from quantfid.metrics.stream import FidelityAccumulator

    require(backend, "score")
    cw = unit.ref.cw
    w = cw.windows
    ref = ReferenceRows(_store_path(unit, ctx))
    ids = np.array(w.tokens, dtype=np.int64, copy=True)
    # the reference's windows decide BOS (every model sees the same ids); a stored reference
    # (llama.cpp base file) keeps the original tokens: BOS as the model adds it
    bos = w.bos_id if isinstance(unit.ref, ReferenceUnit) else backend.bos_id()
    if bos is not None:
        ids[:, 0] = bos
    reducer = CompareReducer(ref, window_targets(w.tokens, w.first), w.first)
    acc = FidelityAccumulator()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("window", "pos", "target", *TOKEN_FIELDS)}
    pos0 = w.first
    last = -1
    bounds: list[tuple[np.ndarray, np.ndarray]] = []
    for win, res in backend.score_windows(ids, w.first, w.n_ctx - 1, reducer,  # type: ignore[attr-defined]
                                          batch_size=unit.batch_size):
        tm = res.metrics if hasattr(res, "kld_bound_low") else res  # a server's top-K estimate
        if tm is not res:
            bounds.append((res.kld_bound_low, res.kld_bound_high))
        pos0 = w.first if win != last else pos0
        last = win
        n = len(tm)
        wid = np.full(n, win, dtype=np.int32)
        acc.update(tm, wid)
        cols["window"].append(wid)
        cols["pos"].append(np.arange(pos0, pos0 + n, dtype=np.int32))
        cols["target"].append(np.asarray(w.tokens[win, pos0 + 1:pos0 + 1 + n], dtype=np.int32))
        for k in TOKEN_FIELDS:
            v = getattr(tm, k, None)
            cols[k].append(np.full(n, np.nan) if v is None else np.asarray(v))
        pos0 += n
    stats = acc.result(n_boot=unit.n_boot, rng=np.random.default_rng(unit.seed)).to_json()
    if bounds:  # means of per-token bounds bound the mean (quantfid.metrics.topk)
        stats["kld_bound_low"] = float(np.mean(np.concatenate([b[0] for b in bounds])))
        stats["kld_bound_high"] = float(np.mean(np.concatenate([b[1] for b in bounds])))
    row = fidelity_row(unit.model.id, unit.ref.model.id, cw.corpus, cw.corpus_hash, cw.ctx,
                       cw.scoring, len(w), stats)
    if unit.table == "noise_floor":
        row["method"] = str(unit.model.spec.option("perturb"))
    columns = {k: np.concatenate(v) for k, v in cols.items()}
    parts = [Part("tokens", unit.part, _tokens_table(columns, unit.model.id, cw), unit.hash),
             Part(unit.table, unit.part, [row], unit.hash)]
    return UnitOutput(parts=parts, summary=row)


def fidelity_row(model: str, reference: str, corpus: str, corpus_hash: str, ctx: int,
                 scoring: str, n_windows: int, stats: dict[str, Any]) -> dict[str, Any]:
    """The ``fidelity`` table row: the head columns, then every statistic (lists and dicts
    as JSON text)."""
    out: dict[str, Any] = {"model": model, "reference": reference, "corpus": corpus,
                           "corpus_hash": corpus_hash, "ctx": ctx, "scoring": scoring,
                           "n_windows": n_windows}
    for k in (*STATS_KEYS, *CI_KEYS):
        out.setdefault(k, stats.get(k))
    for k, v in stats.items():
        if k == "n_windows":
            continue
        out[k] = json.dumps(v) if isinstance(v, list | tuple | dict) else v
    return out


def _tokens_table(columns: dict[str, np.ndarray], model: str, cw: Any) -> Any:
    import pyarrow as pa

    n = len(columns["window"])
    data: dict[str, Any] = {"model": pa.array([model] * n), "corpus": pa.array([cw.corpus] * n),
                            "ctx": pa.array(np.full(n, cw.ctx, np.int32)),
                            "scoring": pa.array([cw.scoring] * n)}
    data.update({k: pa.array(v) for k, v in columns.items()})
    return pa.table(data)


def token_means(model: str, benchmark: str, prompt_id: str, tm: TokenMetrics) -> Any:
    """Per-prompt fidelity: means over the prompt's scored tokens (KL also max and sum)."""
    from quantfid.records import PromptFidelity

    def mean(x: np.ndarray | None) -> float | None:
        return None if x is None else float(np.mean(x))

    return PromptFidelity(model=model, benchmark=benchmark, prompt_id=prompt_id,
                          n_tokens=len(tm), kld_mean=float(np.mean(tm.kld)),
                          kld_max=float(np.max(tm.kld)), kld_sum=float(np.sum(tm.kld)),
                          rkld_mean=mean(tm.rkld), jsd_mean=mean(tm.jsd),
                          same_top1=float(np.mean(tm.same_top1)), dp_mean=mean(tm.dp),
                          nll_ref_mean=mean(tm.nll_ref), nll_q_mean=mean(tm.nll_q))


Runner = Callable[[Unit, Backend, UnitContext, Model], UnitOutput]
