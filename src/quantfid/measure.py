"""``quantfid measure``: a reference and its quants over one corpus x context, compared.

The same units as the study (:mod:`quantfid.units`): the reference runs once into a compact
reference store (``--store full`` keeps every log-prob), then each quant runs over the same
windows and is compared with the stored reference chunk by chunk where its logits are
computed: nothing holds corpus x vocab. Per quant this gives the per-token metrics
(KL(P_ref || P_q) in nats etc., :class:`~quantfid.metrics.types.TokenMetrics`; table
``tokens``) and one summary (:mod:`quantfid.metrics.summary`; table ``fidelity``).

With a workspace every unit is kept there and a re-run (or a study on that workspace) skips
it; without one, a temporary workspace is used and removed.

Model specs (``quantfid.models.parse_spec``): a ``.gguf`` file, a model directory, a hub id,
a server URL, or a cohort recipe (``Q4_K_M``, ``recipe:NAME``) applied to the reference. The
reference: the same kinds except recipes, the embedded default, or a stored reference (a
quantfid store directory or a llama.cpp ``--kl-divergence-base`` file: its tokens are used).
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.corpus import SCORINGS, first_scored
from quantfid.errors import MismatchError, QuantfidError
from quantfid.hashing import hash_array, hash_file, hash_json
from quantfid.metrics.types import STATS_KEYS
from quantfid.models import ModelSpec, parse_spec
from quantfid.pool import ModelPool
from quantfid.records import Model
from quantfid.store.workspace import Workspace
from quantfid.units import CorpusWindows, FidelityUnit, StoredReference
from quantfid.units.run import CI_KEYS, HEAD

STORES = ("compact", "full")


@dataclass(frozen=True)
class MeasureResult:
    """One quant against the reference on one corpus x ctx x scoring.

    stats: every STATS_KEYS key, the CIs and the other summary fields; reused: the unit was
    found done in the workspace; seconds: the unit's run time (0 when reused).
    """

    model: str
    reference: str
    corpus: str
    corpus_hash: str
    ctx: int
    scoring: str
    n_windows: int
    stats: dict[str, Any]
    reused: bool = False
    timing: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, **self.stats, "reference": self.reference,
                "corpus": self.corpus, "corpus_hash": self.corpus_hash, "ctx": self.ctx,
                "scoring": self.scoring, "n_windows": self.n_windows}

    @staticmethod
    def from_row(row: dict[str, Any], reused: bool = True) -> MeasureResult:
        stats = {k: v for k, v in row.items() if k not in HEAD}
        if isinstance(stats.get("kld_buckets"), str):
            stats["kld_buckets"] = json.loads(stats["kld_buckets"])
        stats["n_windows"] = row["n_windows"]
        return MeasureResult(**{k: row[k] for k in HEAD}, stats=stats, reused=reused)


def is_stored_reference(spec: str) -> bool:
    """A quantfid store directory or a llama.cpp kld-base file."""
    p = Path(spec)
    if p.is_dir():
        return (p / "meta.json").is_file()
    if p.is_file() and not spec.endswith(".gguf"):
        with open(p, "rb") as fh:
            return fh.read(8) == b"_logits_"
    return False


def stored_reference(spec: str, *, corpus: str | None, ctx: int | None, chunks: int | None,
                     name: str | None) -> StoredReference:
    """A reference read from a quantfid store directory or a llama.cpp kld-base file."""
    from quantfid import corpus as corpora
    from quantfid.reducers import ReferenceRows

    p = Path(spec)
    rows = ReferenceRows(p)
    if rows.kind == "kld-base":
        kb = rows.store
        tokens = np.asarray(kb.tokens, dtype=np.int64)
        model = Model(id=name or p.stem, role="reference", source=str(p.resolve()),
                      format="llamacpp-kld-base", hash=hash_file(p))
        cid, chash, ref_ctx, scoring = p.stem, hash_array(tokens), kb.n_ctx, "llamacpp"
    else:
        m = rows.store.meta
        tokens = np.asarray(rows.store.tokens, dtype=np.int64)
        model = Model(id=name or m.model_id, role="reference", source=str(p.resolve()),
                      format=f"quantfid-{m.kind}-store", hash=m.model_hash)
        named = re.fullmatch(rf"(.+)-{m.ctx}-{m.scoring}-[0-9a-f]{{16}}", p.name)
        cid, chash = (named.group(1) if named else p.name), m.corpus_hash or hash_array(tokens)
        ref_ctx, scoring = m.ctx, m.scoring
    if corpus is not None:
        c = corpora.load_corpus(corpus)
        if rows.kind != "kld-base" and chash != c.hash:
            raise MismatchError(f"{spec} was measured on corpus {chash[:12]}, not {corpus!r} "
                                f"({c.hash[:12]})")
        cid = c.name
    if ctx is not None and ctx != ref_ctx:
        raise MismatchError(f"{spec} holds windows of {ref_ctx} tokens, not --ctx {ctx}")
    n = tokens.shape[0] if chunks is None else min(chunks, tokens.shape[0])
    if n == 0:
        raise QuantfidError(f"{spec} holds no windows")
    w = corpora.Windows(tokens=tokens[:n], n_ctx=ref_ctx, first=first_scored(ref_ctx, scoring),
                        scoring=scoring, bos_id=None)
    cw = CorpusWindows(cid, chash, w, {"name": cid, "hash": chash, "source": str(p.resolve())})
    unit = hash_json({"stored": model.hash, "tokens": hash_array(tokens[:n])})
    return StoredReference(p.resolve(), model, cw, unit)


@contextlib.contextmanager
def _workspace(workspace: str | Path | Workspace | None) -> Iterator[Workspace]:
    if isinstance(workspace, Workspace):
        yield workspace
    elif workspace is not None:
        yield Workspace(workspace)
    else:
        with tempfile.TemporaryDirectory(prefix="quantfid-measure-") as tmp:
            yield Workspace(tmp)


def _check_args(quants: Sequence[str], ctx: int | None, chunks: int | None, scoring: str,
                store: str, batch_size: int, n_boot: int, names: list[str | None]) -> None:
    if not quants:
        raise QuantfidError("give at least one --quant")
    if scoring not in SCORINGS:
        raise QuantfidError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
    if store not in STORES:
        raise QuantfidError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if ctx is not None and ctx < 4:
        raise QuantfidError(f"--ctx must be at least 4 tokens, got {ctx}")
    if chunks is not None and chunks < 1:
        raise QuantfidError(f"--chunks must be at least 1, got {chunks}")
    if batch_size < 1:
        raise QuantfidError(f"batch size must be at least 1, got {batch_size}")
    if n_boot < 0:
        raise QuantfidError(f"--n-boot must be >= 0, got {n_boot}")
    if len(names) > len(quants):
        raise QuantfidError(f"{len(names)} --name values for {len(quants)} quants")


def measure(reference: str | None, quants: Sequence[str], corpus: str | None = "prose",
            ctx: int | None = 512, *, chunks: int | None = None, scoring: str = "llamacpp",
            backend: str | None = None, dtype: str = "float32", device: str = "auto",
            numerics: str = "auto", workspace: str | Path | Workspace | None = None,
            names: Sequence[str | None] | None = None, reference_name: str | None = None,
            batch_size: int = 1, store: str = "compact", n_boot: int = 1000, seed: int = 0,
            imatrix: str | Path | None = None, progress: bool = True,
            options: dict[str, Any] | None = None) -> list[MeasureResult]:
    """Measure every quant against the reference on one corpus x context x scoring.

    Returns one MeasureResult per quant, in order (see the module docstring). ``names``: an
    id per quant; ``backend``: the runtime for file specs (default: by the spec);
    ``numerics``: ``auto`` | ``weights`` | ``ggml-cpu``; ``options``: backend options (server
    dialect, top-K, ...). The bootstrap uses ``np.random.default_rng(seed)``.
    """
    name_list = list(names or [])
    _check_args(quants, ctx, chunks, scoring, store, batch_size, n_boot, name_list)
    name_list += [None] * (len(quants) - len(name_list))
    stored = reference is not None and is_stored_reference(reference)
    sref = stored_reference(reference, corpus=corpus, ctx=ctx, chunks=chunks,  # type: ignore[arg-type]
                            name=reference_name) if stored else None
    kw = {"backend": backend, "dtype": dtype, "device": device, "numerics": numerics,
          "n_ctx": sref.cw.ctx if sref is not None else ctx, **(options or {})}
    ref_spec = None if stored else parse_spec(reference, role="reference", name=reference_name,
                                               **kw)
    specs = [parse_spec(q, name=n, **kw) for q, n in zip(quants, name_list, strict=True)]
    if stored and any(s.kind == "recipe" for s in specs):
        raise QuantfidError("recipes are applied to a reference model, not to a stored "
                            "reference: give the reference model with --reference")
    if not stored and (ctx is None or corpus is None):
        raise QuantfidError("--corpus and --ctx are required with a model reference")
    with _workspace(workspace) as ws:
        pool = ModelPool(ref_spec, imatrix=imatrix, progress=progress)
        return _run(ws, pool, sref, specs, corpus, ctx, chunks, scoring,
                    settings={"store": store, "n_boot": n_boot, "seed": seed,
                              "window_batch": batch_size}, progress=progress)


def _run(ws: Workspace, pool: ModelPool, sref: StoredReference | None, specs: list[ModelSpec],
         corpus: str | None, ctx: int | None, chunks: int | None, scoring: str,
         settings: dict[str, Any], progress: bool) -> list[MeasureResult]:
    from quantfid.executors import run_local
    from quantfid.units.plan import Settings, corpus_windows, plan_units

    quants = [pool.ref_of(s) for s in specs]
    for q in quants:
        if pool.reference_spec is not None and q.id == pool.reference_spec.id:
            raise MismatchError(f"quant id {q.id!r} equals the reference id; give --name")
    ref: Any
    if sref is not None:
        ref = sref
        corpora = [ref.cw]
        ws.commit([], [ref.model])
    else:
        if any(q.identity.numerics == "ggml-cpu" for q in quants):
            pool.set_reference_numerics("ggml-cpu")
        ref = pool.ref_ref()
        assert corpus is not None and ctx is not None
        corpora = corpus_windows(pool.reference(), corpus, [ctx], [chunks], scoring)
    units = plan_units(ref, quants, corpora, [], Settings(**settings))
    done = run_local(ws, pool, units, progress)
    out = []
    for u in units:
        if isinstance(u, FidelityUnit):
            row = _stored_row(ws, u)
            out.append(MeasureResult.from_row(row, reused=u.hash not in done))
    return out


def _stored_row(ws: Workspace, u: FidelityUnit) -> dict[str, Any]:
    import pyarrow.parquet as pq

    path = ws.path / "tables" / u.table / f"{u.part}.parquet"
    for p in ws.parts(u.table):
        if p.name == path.name:
            return dict(pq.read_table(p).replace_schema_metadata(None).to_pylist()[0])
    raise QuantfidError(f"fidelity part {u.part} vanished from {ws.path}")


def stats_keys() -> tuple[str, ...]:
    """The keys every printed row has (STATS_KEYS then the CIs)."""
    return (*STATS_KEYS, *CI_KEYS)
