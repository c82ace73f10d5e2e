"""Read a tool's files and store them in a workspace (what ``quantfid ingest`` does).

Per benchmark the outcomes go to ``outcomes/ingest-<format>-<model>-<benchmark>`` and the
prompt texts to ``prompts/`` under the same part name, keyed by the hash of the input
files and the options that shape the outcomes: re-ingesting the same files is a no-op,
changed files replace the part. llama.cpp KLD summaries go to
``fidelity/ingest-llamacpp-<model>-<corpus>-ctx<ctx>``. The manifest section ``ingest``
records, per ``<model>::<benchmark>``, the format, files, source facts and what
``--intersect`` dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantfid.errors import QuantfidError
from quantfid.ingest import evalplus, livecodebench, llamacpp, lm_eval, table
from quantfid.ingest import prompts as prompts_mod
from quantfid.ingest.common import DEFAULT_PASS_THRESHOLD, IngestResult, unit_hash
from quantfid.ingest.validate import StoredOutcomes, check_benchmark
from quantfid.records import Model, Outcome

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


def _register(ws: Any, model: str, reference: bool, source: str) -> None:
    known = ws.manifest["models"].get(model)
    if known is None:
        ws.add_model(Model(id=model, role="reference" if reference else "quant",
                           format="external", source=source))
    elif reference and known.get("role") != "reference":
        ws.add_model(dataclasses.replace(Model.from_dict(known), role="reference"))
    elif reference:
        ws.add_model(Model.from_dict(known))  # re-assert: errors if another is the reference


def ingest(ws: Any, fmt: str, paths: list[Path], model: str, *, reference: bool = False,
           benchmarks: list[str] | None = None, filter_name: str | None = None,
           pass_threshold: float = DEFAULT_PASS_THRESHOLD, intersect: bool = False,
           mapping: dict[str, str] | None = None, corpus: str | None = None,
           ctx: int | None = None) -> IngestSummary:
    """Read ``paths`` and store ``model``'s outcomes, prompts and fidelity rows in ``ws``."""
    fid_ref = model if reference else ws.manifest.get("reference")
    res = read(fmt, paths, model, benchmarks=benchmarks, filter_name=filter_name,
               pass_threshold=pass_threshold, mapping=mapping, corpus=corpus, ctx=ctx,
               reference=fid_ref)
    _register(ws, model, reference, ", ".join(map(str, paths)))
    options = {"format": fmt, "threshold": pass_threshold, "filter": filter_name,
               "benchmarks": sorted(benchmarks or []), "map": mapping or {}}
    by_bench = res.by_benchmark()
    texts = res.prompts_by_benchmark()
    stored: StoredOutcomes | None = None  # loaded on the first benchmark that changed
    manifest = ws.manifest
    entries: dict[str, dict[str, Any]] = {}
    new_benchmarks: dict[str, dict[str, Any]] = {}
    summaries = []
    for bench in sorted(by_bench):
        outs = by_bench[bench]
        part = f"ingest-{fmt}-{model}-{bench}"
        uh = unit_hash(res.files[bench], options)
        info = res.benchmarks.get(bench, {})
        if ws.has_part("outcomes", part, uh):
            gone = _dropped_before(manifest, model, bench)
            kept = [o for o in outs if o.prompt_id not in gone]
            summaries.append(BenchmarkSummary(bench, len(kept), _acc(kept), "unchanged", part))
            continue
        status = "replaced" if ws.has_part("outcomes", part) else "new"
        if stored is None:
            stored = StoredOutcomes.load(ws)
        chk = check_benchmark(ws, stored, model, bench, outs, info, part, intersect=intersect,
                              manifest=manifest)
        ws.add_outcomes(part, chk.outcomes, unit_hash=uh)
        keep = {o.prompt_id for o in chk.outcomes}
        pts = [p for p in texts.get(bench, []) if p.prompt_id in keep]
        if pts:
            ws.write_part(prompts_mod.TABLE, part, prompts_mod.to_table(model, pts, fmt), uh)
        else:
            ws.drop_part(prompts_mod.TABLE, part)
        entries[f"{model}::{bench}"] = {
            "format": fmt, "files": [str(p) for p in res.files[bench]], "unit_hash": uh,
            "info": info, "dropped": list(chk.dropped_new),
            "dropped_others": chk.dropped_others}
        new_benchmarks[bench] = {"source": info.get("source", fmt), "metric": info.get("metric")}
        stored.put(part, uh, [_row(o) for o in chk.outcomes])
        summaries.append(BenchmarkSummary(bench, len(chk.outcomes), _acc(chk.outcomes), status,
                                          part, chk.dropped_new, chk.dropped_others))
    if entries:
        with ws.update() as m:  # one manifest write for all benchmarks
            m.setdefault("ingest", {}).update(entries)
            known = m.setdefault("benchmarks", {})
            for bench, entry in new_benchmarks.items():
                known.setdefault(bench, entry)
    for row in res.fidelity:
        part = f"ingest-llamacpp-{model}-{row['corpus']}-ctx{row['ctx']}"
        uh = unit_hash(res.files[f"fidelity:{row['corpus']}:{row['ctx']}"], options)
        if not ws.has_part("fidelity", part, uh):
            ws.write_part("fidelity", part, [row], uh)
    return IngestSummary(model, fmt, tuple(summaries), tuple(res.fidelity), tuple(res.warnings))


def _dropped_before(manifest: dict[str, Any], model: str, bench: str) -> set[str]:
    """Prompt ids of ``model`` on ``bench`` that earlier --intersect runs dropped."""
    gone: set[str] = set()
    for key, e in manifest.get("ingest", {}).items():
        if key == f"{model}::{bench}":
            gone.update(e.get("dropped", []))
        elif key.endswith(f"::{bench}"):
            gone.update((e.get("dropped_others") or {}).get(model, []))
    return gone


def _row(o: Outcome) -> dict[str, Any]:
    """``o.to_dict()`` without dataclasses.asdict's deep copies (Outcome holds scalars)."""
    return {f.name: getattr(o, f.name) for f in _OUTCOME_FIELDS}


_OUTCOME_FIELDS = dataclasses.fields(Outcome)


def _acc(outs: list[Any]) -> float:
    return sum(bool(o.passed) for o in outs) / len(outs) if outs else float("nan")
