"""``quantfid measure``: run a reference and its quants over a corpus and compare them.

The reference runs once per corpus x context x scoring: its log-probs at the scored
positions go to a reference store (compact by default; under the workspace's
``arrays/reference/`` when a workspace is given, else a temporary directory). Then each
quant runs over the same windows and every window is compared against the stored
reference as soon as it is computed (streaming: nothing holds corpus x vocab). Per quant
this gives the per-token metrics (KL(P_ref || P_q) in nats etc., see
``quantfid.metrics.types.TokenMetrics``) and one summary (``quantfid.metrics.summary``).

Units of work are keyed by the hash of their inputs: the reference unit by the reference
weights' hash, dtype, backend, the window tokens (corpus text, tokenizer, context, chunks,
BOS, scoring) and the store settings; a quant unit by the quant's hash (file / directory
hash, or recipe + reference hash + importance-matrix hash), the reference unit, dtype,
backend and the bootstrap settings. With a workspace a re-run skips every unit whose part is
stored with the same hash and recomputes only what changed.

Workspace tables written: ``tokens`` (one part per quant x corpus x ctx x scoring: columns
model, corpus, ctx, scoring, window, pos (the scored logit position in the window; it
predicts ``target`` at pos + 1), target, and every TokenMetrics field) and ``fidelity``
(one row: model, reference, corpus, corpus_hash, ctx, scoring, n_windows, every STATS_KEYS
key, the CIs and the other summary fields). The ``fidelity`` part is written last, so it
marks the unit done.

Quant specs: a ``.gguf`` file, a local model directory, a hub id, or a cohort recipe name
(``Q4_K_M``, ``rtn-w4g64-asym``, ...; ``recipe:NAME`` forces that reading) applied to a deep
copy of the reference module. The reference: the same kinds except recipes, ``None`` /
``embedded`` for the embedded default, or a stored reference: a quantfid store directory
(``meta.json``) or a llama.cpp ``--kl-divergence-base`` file (then its tokens are used and
the corpus is the file's).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from quantfid.corpus import SCORINGS, first_scored, load_corpus, make_windows
from quantfid.errors import MismatchError, QuantfidError
from quantfid.hashing import hash_array, hash_file, hash_json
from quantfid.metrics.types import STATS_KEYS
from quantfid.records import Model, Role
from quantfid.store.workspace import Workspace

UNIT_VERSION = 1
STORES = ("compact", "full")
BACKENDS = ("hf", "llamacpp")
CI_KEYS = ("kld_mean_ci_low", "kld_mean_ci_high", "ln_ppl_ratio_ci_low", "ln_ppl_ratio_ci_high")
TOKEN_FIELDS = ("kld", "same_top1", "ref_top1_prob", "rkld", "jsd", "nll_ref", "nll_q", "dp",
                "top5_overlap", "top10_overlap")


class RunBackend(Protocol):
    """What measure needs of a backend (``HFBackend`` and ``LlamaCppBackend`` provide it)."""

    info: Model

    def vocab_size(self) -> int: ...

    def tokenizer_id(self) -> str: ...

    def bos_id(self) -> int | None: ...

    def tokenize(self, text: str, bos: bool | None = None) -> np.ndarray: ...

    def logprobs(self, windows: np.ndarray, batch_size: int = 1, start: int = 0,
                 stop: int | None = None) -> Iterator[Any]: ...


class RefStore(Protocol):
    def metrics_against(self, w: int, q: Any, targets: np.ndarray | None = None) -> Any: ...


@dataclass(frozen=True)
class MeasureResult:
    """One quant against the reference on one corpus x ctx x scoring.

    stats: ``FidelityStats.to_json()`` (every STATS_KEYS key, CIs, buckets...).
    timing: seconds spent in forward passes and in everything else for this quant
    (zeros when the unit was reused from the workspace).
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
        """``{"model": id, ...stats, corpus, ctx, scoring, n_windows, reference}``."""
        return {"model": self.model, **self.stats, "reference": self.reference,
                "corpus": self.corpus, "corpus_hash": self.corpus_hash, "ctx": self.ctx,
                "scoring": self.scoring, "n_windows": self.n_windows}

    def row(self) -> dict[str, Any]:
        """The ``fidelity`` table row."""
        out: dict[str, Any] = {"model": self.model, "reference": self.reference,
                               "corpus": self.corpus, "corpus_hash": self.corpus_hash,
                               "ctx": self.ctx, "scoring": self.scoring,
                               "n_windows": self.n_windows}
        for k, v in self.stats.items():
            if k == "n_windows":
                continue
            out[k] = json.dumps(v) if isinstance(v, list | tuple | dict) else v
        return out

    @staticmethod
    def from_row(row: dict[str, Any]) -> MeasureResult:
        head = ("model", "reference", "corpus", "corpus_hash", "ctx", "scoring", "n_windows")
        stats = {k: v for k, v in row.items() if k not in head}
        if isinstance(stats.get("kld_buckets"), str):
            stats["kld_buckets"] = json.loads(stats["kld_buckets"])
        stats["n_windows"] = row["n_windows"]
        return MeasureResult(**{k: row[k] for k in head}, stats=stats, reused=True)


# ---- model specs ---------------------------------------------------------------------------
def is_stored_reference(spec: str) -> bool:
    """A quantfid store directory or a llama.cpp kld-base file."""
    p = Path(spec)
    if p.is_dir():
        return (p / "meta.json").is_file()
    if p.is_file() and not spec.endswith(".gguf"):
        with open(p, "rb") as fh:
            return fh.read(8) == b"_logits_"
    return False


def _recipe(spec: str) -> Any:
    """The cohort recipe ``spec`` names, or None if it names none (and is no ``recipe:``)."""
    from quantfid.quantize import get_recipe

    name = spec[len("recipe:"):] if spec.startswith("recipe:") else spec
    if not spec.startswith("recipe:") and (Path(spec).exists() or "/" in spec):
        return None
    try:
        return get_recipe(name)
    except QuantfidError:
        if spec.startswith("recipe:"):
            raise
        return None


def load_backend(spec: str | None, kind: str, *, n_ctx: int, dtype: str, device: str,
                 role: Role, name: str | None) -> RunBackend:
    """A backend running ``spec`` (GGUF, model directory, hub id, or the embedded model)."""
    if kind == "llamacpp":
        from quantfid import embedded
        from quantfid.backends.llamacpp import LlamaCppBackend

        path = str(embedded.gguf_path()) if spec in (None, "embedded") else spec
        if not str(path).endswith(".gguf"):
            raise QuantfidError(f"--backend llamacpp runs GGUF files only, not {spec!r}")
        if dtype != "float32":
            raise QuantfidError("--dtype applies to the hf backend; llama.cpp computes in the "
                                "GGUF's own types")
        return LlamaCppBackend(path, n_ctx=n_ctx, role=role, name=name)
    if kind != "hf":
        raise QuantfidError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
    from quantfid.backends.hf import HFBackend

    return HFBackend.load(spec, dtype=dtype, device=device, role=role, name=name)


def _hf_quant_from_recipe(ref: RunBackend, recipe: Any, imatrix: Any, name: str | None,
                          progress: bool) -> tuple[RunBackend, Model]:
    from quantfid.backends.base import LoadedModel
    from quantfid.backends.hf import HFBackend
    from quantfid.quantize import quantize_model

    if not isinstance(ref, HFBackend):
        raise QuantfidError(f"recipe {recipe.name} needs a torch reference (--backend hf)")
    module = copy.deepcopy(ref.module)
    report = quantize_model(module, recipe, imatrix, reference_hash=ref.info.hash,
                            progress=progress)
    info = Model(id=name or recipe.name, role="quant",
                 source=f"recipe:{recipe.name}@{ref.info.id}", format="recipe",
                 scheme=recipe.name, bits_per_weight=report.bits_per_weight,
                 bytes=report.bytes, hash=report.hash,
                 extra={"quantized_bits_per_weight": report.quantized_bits_per_weight,
                        "type_counts": report.type_counts()})
    loaded = LoadedModel(module=module, tokenizer=ref.tokenizer, info=info, device=ref.device,
                         dtype=ref.loaded.dtype)
    return HFBackend(loaded), info


# ---- the reference --------------------------------------------------------------------------
@dataclass
class Reference:
    """The reference as the quant loop sees it: its record, store, windows and identity."""

    model: Model
    store: RefStore
    tokens: np.ndarray  # (n, ctx) int64 original window tokens
    ctx: int
    scoring: str
    first: int
    bos_id: int | None
    tokenizer_id: str | None
    vocab_size: int
    corpus: str
    corpus_hash: str
    unit_hash: str
    backend: RunBackend | None = None
    corpus_info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_windows(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def n_score(self) -> int:
        return self.ctx - 1 - self.first

    def input_ids(self, bos_id: int | None) -> np.ndarray:
        ids = self.tokens.copy()
        if bos_id is not None:
            ids[:, 0] = bos_id
        return ids


def _open_store(path: Path) -> Any:
    from quantfid.store.compact import CompactStore
    from quantfid.store.full import FullStore
    from quantfid.store.meta import StoreMeta

    kind = StoreMeta.load(path).kind
    if kind == "compact":
        return CompactStore(path)
    if kind == "full":
        return FullStore(path)
    raise QuantfidError(f"{path}: unknown store kind {kind!r}")


def stored_reference(spec: str, *, corpus: str | None, ctx: int | None, chunks: int | None,
                     name: str | None) -> Reference:
    """A reference read from a quantfid store directory or a llama.cpp kld-base file."""
    p = Path(spec)
    if p.is_dir():
        store = _open_store(p)
        m = store.meta
        tokens = np.asarray(store.tokens, dtype=np.int64)
        model = Model(id=name or m.model_id, role="reference", source=str(p.resolve()),
                      format=f"quantfid-{m.kind}-store", hash=m.model_hash)
        # measure names its stores <corpus>-<ctx>-<scoring>-<unit hash>
        named = re.fullmatch(rf"(.+)-{m.ctx}-{m.scoring}-[0-9a-f]{{16}}", p.name)
        cid, chash = (named.group(1) if named else p.name), m.corpus_hash or hash_array(tokens)
        if corpus is not None:
            c = load_corpus(corpus)
            if m.corpus_hash and c.hash != m.corpus_hash:
                raise MismatchError(f"{spec} was measured on corpus {m.corpus_hash[:12]}, not "
                                    f"{corpus!r} ({c.hash[:12]})")
            cid = c.name
        ref_ctx, scoring, tok_id, vocab = m.ctx, m.scoring, m.tokenizer_id, m.vocab_size
    else:
        from quantfid.store.llamacpp import KldBase

        store = KldBase(p)
        tokens = np.asarray(store.tokens, dtype=np.int64)
        model = Model(id=name or p.stem, role="reference", source=str(p.resolve()),
                      format="llamacpp-kld-base", hash=hash_file(p))
        cid, chash = p.stem, hash_array(tokens)
        if corpus is not None:
            cid = corpus
        ref_ctx, scoring, tok_id, vocab = store.n_ctx, "llamacpp", None, store.n_vocab
    if ctx is not None and ctx != ref_ctx:
        raise MismatchError(f"{spec} holds windows of {ref_ctx} tokens, not --ctx {ctx}")
    n = tokens.shape[0] if chunks is None else min(chunks, tokens.shape[0])
    if n == 0:
        raise QuantfidError(f"{spec} holds no windows")
    unit = hash_json({"v": UNIT_VERSION, "stored": model.hash, "tokens": hash_array(tokens[:n])})
    return Reference(model=model, store=store, tokens=tokens[:n], ctx=ref_ctx, scoring=scoring,
                     first=first_scored(ref_ctx, scoring), bos_id=None, tokenizer_id=tok_id,
                     vocab_size=vocab, corpus=cid, corpus_hash=chash, unit_hash=unit,
                     corpus_info={"name": cid, "hash": chash, "source": str(p.resolve())})


def run_reference(backend: RunBackend, *, corpus: str, ctx: int, chunks: int | None,
                  scoring: str, dtype: str, backend_kind: str, store_kind: str,
                  ws: Workspace | None, tmp: Path, batch_size: int, progress: bool
                  ) -> Reference:
    """Tokenize the corpus, cut windows, and run the reference into a store (or reuse it)."""
    from quantfid import progress as bars

    c = load_corpus(corpus)
    bos = backend.bos_id()
    tokens = backend.tokenize(c.text)
    w = make_windows(tokens, ctx, bos, scoring=scoring, max_chunks=chunks)
    unit = hash_json({"v": UNIT_VERSION, "model": backend.info.hash, "dtype": dtype,
                      "backend": backend_kind, "windows": w.hash, "store": store_kind,
                      "corpus": c.hash})
    sub = f"{c.name}-{ctx}-{scoring}-{unit[:16]}"
    path = (ws.array_dir("reference") if ws is not None else tmp) / sub
    ref = Reference(model=backend.info, store=None, tokens=w.tokens, ctx=ctx,  # type: ignore[arg-type]
                    scoring=scoring, first=w.first, bos_id=bos,
                    tokenizer_id=backend.tokenizer_id(), vocab_size=backend.vocab_size(),
                    corpus=c.name, corpus_hash=c.hash, unit_hash=unit, backend=backend,
                    corpus_info=c.to_json())
    if (path / "meta.json").is_file():
        with contextlib.suppress(QuantfidError):
            store = _open_store(path)
            store.check_tokens(w.tokens)
            ref.store = store
            return ref
    from quantfid.store.compact import CompactStoreWriter
    from quantfid.store.full import FullStoreWriter

    kwargs: dict[str, Any] = {"model_id": backend.info.id, "tokenizer_id": ref.tokenizer_id,
              "vocab_size": ref.vocab_size, "ctx": ctx, "scoring": scoring,
              "model_hash": backend.info.hash, "corpus_hash": c.hash, "overwrite": True}
    writer: Any = (CompactStoreWriter(path, **kwargs) if store_kind == "compact"
                   else FullStoreWriter(path, **kwargs))
    bar = bars.bar(total=len(w), desc=f"reference {backend.info.id}", unit="win",
                   disable=None if progress else True)
    with writer, bar:
        i = 0
        for lp in backend.logprobs(w.ids, batch_size, start=w.first, stop=ctx - 1):
            for row in lp:
                writer.append(row, w.tokens[i])
                i += 1
            bar.update(lp.shape[0])
    ref.store = _open_store(path)
    return ref


# ---- one quant ------------------------------------------------------------------------------
def compare(quant: RunBackend, ref: Reference, *, batch_size: int, n_boot: int, seed: int,
            progress: bool) -> tuple[Any, dict[str, np.ndarray], dict[str, float]]:
    """Run ``quant`` over the reference windows; returns (FidelityStats, token columns, timing)."""
    from quantfid import progress as bars
    from quantfid.metrics.stream import FidelityAccumulator

    bos = ref.bos_id if ref.backend is not None else quant.bos_id()
    acc = FidelityAccumulator()
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("window", "pos", "target", *TOKEN_FIELDS)}
    pos = np.arange(ref.first, ref.ctx - 1, dtype=np.int32)
    t_fwd = t_other = 0.0
    bar = bars.bar(total=ref.n_windows, desc=f"measure {quant.info.id}", unit="win",
                   disable=None if progress else True)
    stream = quant.logprobs(ref.input_ids(bos), batch_size, start=ref.first, stop=ref.ctx - 1)
    w = 0
    with bar:
        while True:
            t0 = time.perf_counter()
            lp = next(stream, None)
            t1 = time.perf_counter()
            t_fwd += t1 - t0
            if lp is None:
                break
            for row in lp:
                targets = ref.tokens[w, ref.first + 1:]
                tm = ref.store.metrics_against(w, row, targets)
                wid = np.full(ref.n_score, w, dtype=np.int32)
                acc.update(tm, wid)
                cols["window"].append(wid)
                cols["pos"].append(pos)
                cols["target"].append(targets.astype(np.int32))
                for k in TOKEN_FIELDS:
                    v = getattr(tm, k)
                    cols[k].append(v if v is not None else np.full(ref.n_score, np.nan))
                w += 1
            bar.update(lp.shape[0])
            t_other += time.perf_counter() - t1
    t2 = time.perf_counter()
    stats = acc.result(n_boot=n_boot, rng=np.random.default_rng(seed))
    columns = {k: np.concatenate(v) for k, v in cols.items()}
    t_other += time.perf_counter() - t2
    return stats, columns, {"forward_s": t_fwd, "other_s": t_other}


def _tokens_table(columns: dict[str, np.ndarray], model: str, corpus: str, ctx: int,
                  scoring: str) -> Any:
    import pyarrow as pa

    n = len(columns["window"])
    data: dict[str, Any] = {"model": pa.array([model] * n), "corpus": pa.array([corpus] * n),
                            "ctx": pa.array(np.full(n, ctx, np.int32)),
                            "scoring": pa.array([scoring] * n)}
    data.update({k: pa.array(v) for k, v in columns.items()})
    return pa.table(data)


# ---- the library entry point ----------------------------------------------------------------
@dataclass(frozen=True)
class _QuantSpec:
    spec: str
    name: str | None
    recipe: Any


def _quant_hash(q: _QuantSpec, ref: Reference | None, imatrix: Any) -> str:
    if q.recipe is not None:
        return hash_json({"recipe": q.recipe.to_json(),
                          "reference": ref.model.hash if ref else None,
                          "imatrix": getattr(imatrix, "hash", None) if imatrix else None})
    p = Path(q.spec)
    if p.is_file():
        return hash_file(p)
    if p.is_dir():
        from quantfid.backends.hf import hash_dir

        return hash_dir(p)
    return hash_json({"hub": q.spec})


def _part(model: str, ref: Reference) -> str:
    return f"{model}@{ref.corpus}-{ref.corpus_hash[:8]}@{ref.ctx}@{ref.scoring}"


def _reuse(ws: Workspace, part: str) -> MeasureResult:
    import pyarrow.parquet as pq

    path = ws.path / "tables" / "fidelity" / f"{part}.parquet"
    for p in ws.parts("fidelity"):
        if p.name == path.name:
            rows = pq.read_table(p).replace_schema_metadata(None).to_pylist()
            return MeasureResult.from_row(rows[0])
    raise QuantfidError(f"fidelity part {part} vanished from {ws.path}")


def measure(reference: str | None, quants: Sequence[str], corpus: str | None = "prose",
            ctx: int | None = 512, *, chunks: int | None = None, scoring: str = "llamacpp",
            backend: str = "hf", dtype: str = "float32", device: str = "auto",
            workspace: str | Path | Workspace | None = None,
            names: Sequence[str | None] | None = None, reference_name: str | None = None,
            batch_size: int = 1, store: str = "compact", n_boot: int = 1000, seed: int = 0,
            imatrix: str | Path | None = None, progress: bool = True) -> list[MeasureResult]:
    """Measure every quant against the reference on one corpus x context x scoring.

    Returns one MeasureResult per quant, in order. See the module docstring for the specs,
    the stored tables and how re-runs resume. ``names``: an id per quant (None keeps the
    default id: recipe name, file stem or hub id). ``imatrix``: an importance-matrix file for
    recipes that use one. Randomness: the bootstrap uses ``np.random.default_rng(seed)``.
    """
    if not quants:
        raise QuantfidError("give at least one --quant")
    if scoring not in SCORINGS:
        raise QuantfidError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
    if store not in STORES:
        raise QuantfidError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if backend not in BACKENDS:
        raise QuantfidError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if batch_size < 1:
        raise QuantfidError(f"batch size must be at least 1, got {batch_size}")
    name_list = list(names or [])
    if len(name_list) > len(quants):
        raise QuantfidError(f"{len(name_list)} --name values for {len(quants)} quants")
    name_list += [None] * (len(quants) - len(name_list))
    ws = workspace if isinstance(workspace, Workspace) or workspace is None else Workspace(workspace)
    im = None
    if imatrix is not None:
        from quantfid.quantize.imatrix import load_imatrix

        im = load_imatrix(imatrix)

    with tempfile.TemporaryDirectory(prefix="quantfid-ref-") as tmpdir:
        if reference is not None and is_stored_reference(reference):
            ref = stored_reference(reference, corpus=corpus, ctx=ctx, chunks=chunks,
                                   name=reference_name)
        else:
            if reference is not None and _recipe(reference) is not None and not Path(reference).exists():
                raise QuantfidError(f"--reference {reference!r} is a recipe name; the reference "
                                    "must be a model or a stored reference")
            if ctx is None or corpus is None:
                raise QuantfidError("--corpus and --ctx are required with a model reference")
            ref_backend = load_backend(reference, backend, n_ctx=ctx, dtype=dtype,
                                       device=device, role="reference", name=reference_name)
            if ws is not None:
                ws.add_model(ref_backend.info)
            ref = run_reference(ref_backend, corpus=corpus, ctx=ctx, chunks=chunks,
                                scoring=scoring, dtype=dtype, backend_kind=backend,
                                store_kind=store, ws=ws, tmp=Path(tmpdir),
                                batch_size=batch_size, progress=progress)
        if ws is not None:
            ws.add_model(ref.model)
            ws.set_entry("corpora", ref.corpus, ref.corpus_info)

        results = []
        for spec, nm in zip(quants, name_list, strict=True):
            q = _QuantSpec(spec, nm, _recipe(spec))
            results.append(_measure_one(q, ref, ws=ws, backend=backend, dtype=dtype,
                                        device=device, batch_size=batch_size, n_boot=n_boot,
                                        seed=seed, imatrix=im, progress=progress))
        return results


def _default_id(q: _QuantSpec) -> str:
    if q.name:
        return q.name
    if q.recipe is not None:
        return str(q.recipe.name)
    p = Path(q.spec)
    if p.is_file():
        return p.stem
    return p.name if p.is_dir() else q.spec


def _measure_one(q: _QuantSpec, ref: Reference, *, ws: Workspace | None, backend: str,
                 dtype: str, device: str, batch_size: int, n_boot: int, seed: int,
                 imatrix: Any, progress: bool) -> MeasureResult:
    qid = _default_id(q)
    if qid == ref.model.id:
        raise MismatchError(f"quant id {qid!r} equals the reference id; give --name")
    unit = hash_json({"v": UNIT_VERSION, "quant": _quant_hash(q, ref, imatrix),
                      "reference": ref.unit_hash, "dtype": dtype, "backend": backend,
                      "n_boot": n_boot, "seed": seed})
    part = _part(qid, ref)
    if ws is not None and ws.has_part("fidelity", part, unit):
        return _reuse(ws, part)

    if q.recipe is not None:
        if ref.backend is None:
            raise QuantfidError(f"recipe {q.recipe.name} needs a model reference, not a stored "
                                "one (give the reference model with --reference)")
        qb, info = _hf_quant_from_recipe(ref.backend, q.recipe, imatrix, q.name, progress)
    else:
        qb = load_backend(q.spec, backend, n_ctx=ref.ctx, dtype=dtype, device=device,
                          role="quant", name=qid)
        info = qb.info
    if qb.vocab_size() != ref.vocab_size:
        raise MismatchError(f"{qid!r} has a vocabulary of {qb.vocab_size()}, the reference "
                            f"{ref.model.id!r} {ref.vocab_size}")
    if ref.tokenizer_id is not None:
        from quantfid.backends.hf import check_same_tokenizer

        check_same_tokenizer(ref.tokenizer_id, ref.model.id, qb.tokenizer_id(), qid)
    stats, columns, timing = compare(qb, ref, batch_size=batch_size, n_boot=n_boot, seed=seed,
                                     progress=progress)
    s = stats.to_json()
    res = MeasureResult(model=qid, reference=ref.model.id, corpus=ref.corpus,
                        corpus_hash=ref.corpus_hash, ctx=ref.ctx, scoring=ref.scoring,
                        n_windows=ref.n_windows, stats=s, timing=timing)
    if ws is not None:
        ws.add_model(dataclasses.replace(info, id=qid, role="quant"))
        ws.write_part("tokens", part, _tokens_table(columns, qid, ref.corpus, ref.ctx,
                                                    ref.scoring), unit)
        ws.write_part("fidelity", part, [res.row()], unit)
    return res


def stats_keys() -> tuple[str, ...]:
    """The keys every printed row has (STATS_KEYS then the CIs)."""
    return (*STATS_KEYS, *CI_KEYS)


def register_models(reference: str | None, quants: Sequence[str], workspace: str | Path | Workspace,
                    *, names: Sequence[str | None] | None = None,
                    reference_name: str | None = None, dtype: str = "float32",
                    device: str = "auto") -> list[Model]:
    """Record the reference and the quants in the workspace without measuring them (for
    ``measure --prompts`` without ``--corpus``). Returns the quant records."""
    from quantfid.backends.hf import HFBackend

    ws = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    if reference is not None and is_stored_reference(reference):
        raise QuantfidError("--prompts needs a model reference, not a stored reference")
    ref = HFBackend.load(reference, dtype=dtype, device=device, role="reference",
                         name=reference_name)
    ws.add_model(ref.info)
    name_list = [*(names or []), *[None] * len(quants)][:len(quants)]
    out = []
    for spec, nm in zip(quants, name_list, strict=True):
        q = _QuantSpec(spec, nm, _recipe(spec))
        qid = _default_id(q)
        if q.recipe is not None:
            from quantfid.quantize import model_shape

            bpw = q.recipe.bits_per_weight(model_shape(ref.module))
            info = Model(id=qid, role="quant", source=f"recipe:{q.recipe.name}@{ref.info.id}",
                         format="recipe", scheme=q.recipe.name, bits_per_weight=bpw,
                         hash=hash_json({"recipe": q.recipe.to_json(),
                                         "reference": ref.info.hash}))
        else:
            p = Path(spec)
            fmt = "gguf" if spec.endswith(".gguf") else "hf"
            src = str(p.resolve()) if p.exists() else spec
            info = Model(id=qid, role="quant", source=src, format=fmt,
                         hash=_quant_hash(q, None, None))
        ws.add_model(info)
        out.append(info)
    return out
