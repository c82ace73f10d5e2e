"""Read a tool's files and store them in a workspace (what ``quantfid ingest`` does).

Per benchmark the outcomes go to ``outcomes/ingest-<format>-<model>-<benchmark>`` and the
prompt texts to ``prompts/`` under the same part name, keyed by the hash of the input
files and the options that shape the outcomes: re-ingesting the same files is a no-op,
changed files replace the part. llama.cpp KLD summaries go to
``fidelity/ingest-llamacpp-<model>-<corpus>-ctx<ctx>``. The manifest section ``ingest``
records, per ``<model>::<benchmark>``, the format, files, source facts and what
``--intersect`` left out; ``intersections`` holds, per benchmark, the prompt ids kept
(every model's rows stay stored; readers apply it). Everything is checked first and
committed at once: a failed ingest leaves the workspace unchanged.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantfid.errors import QuantfidError
from quantfid.ingest import evalplus, livecodebench, llamacpp, lm_eval, table
from quantfid.ingest import prompts as prompts_mod
from quantfid.ingest.common import DEFAULT_PASS_THRESHOLD, IngestResult, unit_hash
from quantfid.ingest.validate import StoredOutcomes, check_benchmark
from quantfid.records import Model, Outcome
from quantfid.store.boundary import check_outcome
from quantfid.store.workspace import INTERSECTIONS, Part, register_model

FORMATS = ("lm-eval", "livecodebench", "evalplus", "llamacpp", "table")


def read(fmt: str, paths: list[Path], model: str, *, benchmarks: list[str] | None = None,
         filter_name: str | None = None, pass_threshold: float = DEFAULT_PASS_THRESHOLD,
         mapping: dict[str, str] | None = None, corpus: str | None = None,
         ctx: int | None = None, reference: str | None = None) -> IngestResult:
    """Read ``paths`` in format ``fmt`` as ``model``'s results (no workspace involved)."""
    if not 0.0 < pass_threshold <= 1.0:
        raise QuantfidError(f"--pass-threshold must be in (0, 1], got {pass_threshold}")
    one = None
    if fmt != "lm-eval" and benchmarks:
        if len(benchmarks) > 1:
            raise QuantfidError(f"{fmt}: give at most one --benchmark")
        one = benchmarks[0]
    if filter_name is not None and fmt != "lm-eval":
        raise QuantfidError("--filter applies to lm-eval only")
    if fmt == "lm-eval":
        return lm_eval.read(paths, model, tasks=set(benchmarks) if benchmarks else None,
                            filter_name=filter_name, pass_threshold=pass_threshold)
    if fmt == "livecodebench":
        return livecodebench.read(paths, model, benchmark=one, pass_threshold=pass_threshold)
    if fmt == "evalplus":
        return evalplus.read(paths, model, benchmark=one, pass_threshold=pass_threshold)
    if fmt == "llamacpp":
        return llamacpp.read(paths, model, reference=reference, corpus=corpus, ctx=ctx,
                             benchmark=one)
    if fmt == "table":
        return table.read(paths, model, mapping=mapping, benchmark=one,
                          pass_threshold=pass_threshold)
    raise QuantfidError(f"unknown ingest format {fmt!r}; choose one of {', '.join(FORMATS)}")


@dataclass(frozen=True)
class BenchmarkSummary:
    """One benchmark as stored: status is ``new``, ``replaced`` or ``unchanged``."""

    benchmark: str
    n: int
    accuracy: float
    status: str
    part: str
    dropped: tuple[str, ...] = ()
    dropped_others: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"benchmark": self.benchmark, "n": self.n, "accuracy": self.accuracy,
                "status": self.status, "part": self.part, "dropped": list(self.dropped),
                "dropped_others": {k: list(v) for k, v in self.dropped_others.items()}}


@dataclass(frozen=True)
class IngestSummary:
    model: str
    format: str
    benchmarks: tuple[BenchmarkSummary, ...]
    fidelity: tuple[dict[str, Any], ...]
    warnings: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "format": self.format,
                "benchmarks": [b.to_json() for b in self.benchmarks],
                "fidelity": [dict(r) for r in self.fidelity], "warnings": list(self.warnings)}


def _model_to_register(manifest: dict[str, Any], model: str, reference: bool,
                       source: str) -> Model | None:
    """The model entry this ingest adds or changes (None when the manifest has it as is)."""
    known = manifest["models"].get(model)
    if known is None:
        return Model(id=model, role="reference" if reference else "quant", format="external",
                     source=source)
    if reference:  # promote, or re-assert (refused if another model is the reference)
        return dataclasses.replace(Model.from_dict(known), role="reference")
    return None


def ingest(ws: Any, fmt: str, paths: list[Path], model: str, *, reference: bool = False,
           benchmarks: list[str] | None = None, filter_name: str | None = None,
           pass_threshold: float = DEFAULT_PASS_THRESHOLD, intersect: bool = False,
           mapping: dict[str, str] | None = None, corpus: str | None = None,
           ctx: int | None = None) -> IngestSummary:
    """Read ``paths`` and store ``model``'s outcomes, prompts and fidelity rows in ``ws``:
    every check passes before anything is written, then one :meth:`Workspace.commit`
    writes the parts and the manifest together (a failure leaves ``ws`` unchanged)."""
    fid_ref = model if reference else ws.manifest.get("reference")
    res = read(fmt, paths, model, benchmarks=benchmarks, filter_name=filter_name,
               pass_threshold=pass_threshold, mapping=mapping, corpus=corpus, ctx=ctx,
               reference=fid_ref)
    options = {"format": fmt, "threshold": pass_threshold, "filter": filter_name,
               "benchmarks": sorted(benchmarks or []), "map": mapping or {}}
    return store(ws, res, fmt, model, reference=reference, intersect=intersect,
                 options=options, source=", ".join(map(str, paths)))


def store(ws: Any, res: IngestResult, fmt: str, model: str, *, reference: bool,
          intersect: bool, options: dict[str, Any], source: str) -> IngestSummary:
    """Check ``res`` against the workspace's cohort and commit it (see :func:`ingest`)."""
    manifest = ws.manifest
    new_model = _model_to_register(manifest, model, reference, source)
    if new_model is not None:
        after = copy.deepcopy(manifest)
        register_model(after, new_model, ws.path)  # a refused model fails before any work
        if after["models"] == manifest["models"] and after.get("reference") == manifest.get(
                "reference"):
            new_model = None
    inters: dict[str, Any] = dict(manifest.get(INTERSECTIONS) or {})
    by_bench, texts = res.by_benchmark(), res.prompts_by_benchmark()
    stored: StoredOutcomes | None = None  # loaded on the first benchmark that changed
    parts: list[Part] = []
    drops: list[tuple[str, str]] = []
    entries: dict[str, dict[str, Any]] = {"ingest": {}, "benchmarks": {}, INTERSECTIONS: {}}
    summaries = []
    for bench in sorted(by_bench):
        outs = by_bench[bench]
        for o in outs:
            check_outcome(_row(o), f"{fmt} input for {bench}")
        part = f"ingest-{fmt}-{model}-{bench}"
        uh = unit_hash(res.files[bench], options)
        info = _json_safe(res.benchmarks.get(bench, {}))
        if ws.has_part("outcomes", part, uh):
            kept = _kept(outs, inters.get(bench))
            summaries.append(BenchmarkSummary(bench, len(kept), _acc(kept), "unchanged", part))
            continue
        status = "replaced" if ws.has_part("outcomes", part) else "new"
        if stored is None:
            stored = StoredOutcomes.load(ws)
        chk = check_benchmark(stored, model, bench, outs, info, part,
                              {**manifest, INTERSECTIONS: inters}, intersect=intersect)
        parts.append(Part("outcomes", part, [_row(o) for o in outs], uh))
        if texts.get(bench):
            parts.append(Part(prompts_mod.TABLE, part,
                              prompts_mod.to_table(model, texts[bench], fmt), uh))
        elif ws.has_part(prompts_mod.TABLE, part):
            drops.append((prompts_mod.TABLE, part))
        if chk.keep is not None:
            inters[bench] = entries[INTERSECTIONS][bench] = {
                "prompts": list(chk.keep), "by": model, "dropped": chk.dropped_others}
        entries["ingest"][f"{model}::{bench}"] = {
            "format": fmt, "files": [str(p) for p in res.files[bench]], "unit_hash": uh,
            "info": info, "dropped": list(chk.dropped_new),
            "dropped_others": chk.dropped_others}
        if bench not in manifest.get("benchmarks", {}):
            entries["benchmarks"][bench] = {"source": info.get("source", fmt),
                                            "metric": info.get("metric")}
        stored.put(part, uh, [_row(o) for o in outs])
        kept = _kept(outs, inters.get(bench))
        summaries.append(BenchmarkSummary(bench, len(kept), _acc(kept), status, part,
                                          chk.dropped_new, chk.dropped_others))
    for row in res.fidelity:
        part = f"ingest-llamacpp-{model}-{row['corpus']}-ctx{row['ctx']}"
        uh = unit_hash(res.files[f"fidelity:{row['corpus']}:{row['ctx']}"], options)
        if not ws.has_part("fidelity", part, uh):
            parts.append(Part("fidelity", part, [_json_safe(row)], uh))
    entries = {k: v for k, v in entries.items() if v}
    if parts or entries or new_model is not None:
        ws.commit(parts, [new_model] if new_model is not None else [], entries, drops=drops)
    return IngestSummary(model, fmt, tuple(summaries), tuple(res.fidelity), tuple(res.warnings))


def _kept(outs: list[Outcome], inter: dict[str, Any] | None) -> list[Outcome]:
    """``outs`` as readers see them under the benchmark's recorded intersection."""
    if inter is None:
        return outs
    ids = set(inter["prompts"])
    return [o for o in outs if o.prompt_id in ids]


def _json_safe(obj: Any) -> Any:
    """A copy of foreign JSON-like data fit for the manifest: NaN / inf become None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _row(o: Outcome) -> dict[str, Any]:
    """``o.to_dict()`` without dataclasses.asdict's deep copies (Outcome holds scalars)."""
    return {f.name: getattr(o, f.name) for f in _OUTCOME_FIELDS}


_OUTCOME_FIELDS = dataclasses.fields(Outcome)


def _acc(outs: list[Any]) -> float:
    return sum(bool(o.passed) for o in outs) / len(outs) if outs else float("nan")
