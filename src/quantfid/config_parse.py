"""Reading a study configuration: TOML in, a validated :class:`quantfid.config.StudyConfig`
out. Every table and key is checked once, here, with one line naming the file, the table and
what was expected (the layout is documented in :mod:`quantfid.config`)."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from quantfid.config import (
    DTYPES,
    NUMERICS,
    AnalysisConfig,
    BenchTask,
    ExecutorConfig,
    IngestSource,
    ModelEntry,
    Preset,
    ReferenceConfig,
    StudyConfig,
    preset,
)
from quantfid.errors import QuantfidError


def _expect(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise QuantfidError(f"{where}: {msg}")


def load(path: str | Path, base: Preset = "default") -> StudyConfig:
    """Read a study TOML file; tables and keys left out take ``base``'s values."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise QuantfidError(f"config file not found: {p}") from e
    except tomllib.TOMLDecodeError as e:
        raise QuantfidError(f"{p}: not valid TOML: {e}") from e
    return from_dict(data, str(p), base)


def from_dict(data: dict[str, Any], where: str = "config", base: Preset = "default") -> StudyConfig:
    """Validate a parsed TOML document against the layout in this module's docstring."""
    known = {"reference", "quants", "models", "measure", "benchmarks", "ingest", "analysis",
             "executor"}
    extra = set(data) - known
    _expect(not extra, where, f"unknown table(s) {sorted(extra)}; expected {sorted(known)}")
    cfg = preset(base)
    changes: dict[str, Any] = {"preset": "custom",
                               "reference": _reference(data, cfg, where),
                               "analysis": _analysis(data, cfg, where),
                               "executor": _executor(data, where)}
    changes.update(_quants(data, cfg, where))
    changes.update(_measure(data, cfg, where))
    if "benchmarks" in data:
        changes["benchmarks"] = _benchmarks(data["benchmarks"], where)
    if "ingest" in data:
        changes["ingest"] = _ingest(data["ingest"], where)
    out = dataclasses.replace(cfg, **changes)
    _expect(bool(out.recipes or out.models or out.ingest), where, "the study has no quants")
    return out


def _table(data: dict[str, Any], name: str, where: str, allowed: set[str]) -> dict[str, Any]:
    t = data.get(name, {})
    _expect(isinstance(t, dict), where, f"[{name}] must be a table")
    _unknown(t, allowed, f"{where} [{name}]")
    return t


def _reference(data: dict[str, Any], cfg: StudyConfig, where: str) -> ReferenceConfig:
    ref = _table(data, "reference", where, {"model", "dtype", "device"})
    out = ReferenceConfig(model=str(ref.get("model", cfg.reference.model)),
                          dtype=str(ref.get("dtype", cfg.reference.dtype)),
                          device=str(ref.get("device", cfg.reference.device)))
    _expect(out.dtype in DTYPES, where, f"[reference] dtype must be one of {list(DTYPES)}")
    return out


def _quants(data: dict[str, Any], cfg: StudyConfig, where: str) -> dict[str, Any]:
    q = _table(data, "quants", where, {"recipes", "numerics"})
    out: dict[str, Any] = {}
    if "recipes" in q:
        rec = q["recipes"]
        if rec == "default":
            rec = list(cfg.recipes)
        _expect(isinstance(rec, list) and all(isinstance(r, str) for r in rec), where,
                "[quants] recipes must be a list of recipe names (or \"default\")")
        out["recipes"] = tuple(rec)
    if "numerics" in q:
        _expect(q["numerics"] in NUMERICS, where, f"[quants] numerics must be one of {list(NUMERICS)}")
        out["numerics"] = str(q["numerics"])
    if "models" in data:
        out["models"] = _models(data["models"], where)
    return out


def _models(entries: Any, where: str) -> tuple[ModelEntry, ...]:
    _expect(isinstance(entries, list), where, "[[models]] must be an array of tables")
    out = []
    for i, e in enumerate(entries):
        at = f"[[models]] #{i + 1}"
        _expect(isinstance(e, dict) and isinstance(e.get("spec"), str), where,
                f"{at} needs a spec (a GGUF file, a model directory, a hub id or a server URL)")
        _expect(e.get("numerics") in (None, *NUMERICS), where,
                f"{at} numerics must be one of {list(NUMERICS)}")
        _expect(e.get("dtype") in (None, *DTYPES), where, f"{at} dtype must be one of {list(DTYPES)}")
        head = {"spec", "name", "backend", "dtype", "numerics"}
        out.append(ModelEntry(spec=e["spec"], name=e.get("name"), backend=e.get("backend"),
                              dtype=e.get("dtype"), numerics=e.get("numerics"),
                              options={k: v for k, v in e.items() if k not in head}))
    return tuple(out)


def _measure(data: dict[str, Any], cfg: StudyConfig, where: str) -> dict[str, Any]:
    m = _table(data, "measure", where, {"corpora", "contexts", "chunks", "noise_floor"})
    out: dict[str, Any] = {}
    if "noise_floor" in m:
        _expect(isinstance(m["noise_floor"], bool), where, "[measure] noise_floor must be true "
                "or false")
        out["noise_floor"] = m["noise_floor"]
    if "corpora" in m:
        _expect(isinstance(m["corpora"], list), where, "[measure] corpora must be a list")
        out["corpora"] = tuple(str(c) for c in m["corpora"])
    contexts = tuple(m.get("contexts", cfg.contexts))
    _expect(all(isinstance(c, int) and c >= 8 for c in contexts), where,
            f"[measure] contexts must be integers >= 8, got {list(contexts)}")
    chunks = m.get("chunks", cfg.chunks if contexts == cfg.contexts else [1] * len(contexts))
    if isinstance(chunks, int):
        chunks = [chunks] * len(contexts)
    _expect(len(chunks) == len(contexts) and all(isinstance(c, int) and c >= 1 for c in chunks),
            where, f"[measure] chunks must be one positive integer per context length "
                   f"({len(contexts)}), got {chunks}")
    out["contexts"], out["chunks"] = contexts, tuple(chunks)
    return out


def _benchmarks(entries: Any, where: str) -> tuple[BenchTask, ...]:
    _expect(isinstance(entries, list), where, "[[benchmarks]] must be an array of tables")
    tasks = []
    for i, b in enumerate(entries):
        _expect(isinstance(b, dict) and "task" in b, where, f"[[benchmarks]] #{i + 1} needs a task")
        _unknown(b, {"task", "limit"}, f"{where} [[benchmarks]] #{i + 1}")
        lim = b.get("limit")
        _expect(lim is None or (isinstance(lim, int) and lim > 0), where,
                f"[[benchmarks]] #{i + 1} limit must be a positive integer")
        tasks.append(BenchTask(task=str(b["task"]), limit=lim))
    return tuple(tasks)


def _ingest(entries: Any, where: str) -> tuple[IngestSource, ...]:
    _expect(isinstance(entries, list), where, "[[ingest]] must be an array of tables")
    srcs = []
    for i, s in enumerate(entries):
        _expect(isinstance(s, dict) and {"format", "path", "model"} <= set(s), where,
                f"[[ingest]] #{i + 1} needs format, path and model")
        opts = {k: v for k, v in s.items() if k not in {"format", "path", "model", "reference"}}
        srcs.append(IngestSource(format=str(s["format"]), path=str(s["path"]),
                                 model=str(s["model"]), reference=bool(s.get("reference", False)),
                                 options=opts))
    return tuple(srcs)


def _analysis(data: dict[str, Any], cfg: StudyConfig, where: str) -> AnalysisConfig:
    a = _table(data, "analysis", where, {"k", "band", "n_boot", "seed", "resolution"})
    try:
        an = AnalysisConfig(k=int(a.get("k", cfg.analysis.k)),
                            band=float(a.get("band", cfg.analysis.band)),
                            n_boot=int(a.get("n_boot", cfg.analysis.n_boot)),
                            seed=int(a.get("seed", cfg.analysis.seed)),
                            resolution=float(a.get("resolution", cfg.analysis.resolution)))
    except (TypeError, ValueError) as e:
        raise QuantfidError(f"{where}: [analysis] values must be numbers ({e})") from e
    _expect(0 < an.band <= 1, where, f"[analysis] band must be in (0, 1], got {an.band}")
    _expect(0 < an.resolution <= 1, where,
            f"[analysis] resolution must be in (0, 1], got {an.resolution}")
    _expect(an.n_boot >= 0 and an.k >= 0, where, "[analysis] k and n_boot must be >= 0")
    return an


def _executor(data: dict[str, Any], where: str) -> ExecutorConfig:
    e = _table(data, "executor", where, {"kind", "address", "num_cpus", "num_gpus", "memory"})
    _expect(e.get("kind", "local") in ("local", "ray"), where,
            "[executor] kind must be \"local\" or \"ray\"")
    try:
        return ExecutorConfig(kind=str(e.get("kind", "local")), address=str(e.get("address", "")),
                              num_cpus=float(e.get("num_cpus", 1.0)),
                              num_gpus=float(e.get("num_gpus", 0.0)),
                              memory=int(e.get("memory", 0)))
    except (TypeError, ValueError) as ex:
        raise QuantfidError(f"{where}: [executor] values must be numbers ({ex})") from ex


def _unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise QuantfidError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")
