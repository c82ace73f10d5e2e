"""The study's configuration: a TOML file (read with tomllib) or one of three presets.

Layout of the file (every table optional; what is left out takes the default preset's value)::

    [reference]
    model = "embedded"        # embedded | FILE.gguf | local model directory | hub id
    dtype = "float32"         # float32 | bfloat16 | float16
    device = "auto"           # auto | cpu | cuda

    [quants]
    recipes = ["Q8_0", "Q4_K_M"]          # cohort recipe names applied to the reference
    files = [{path = "q4.gguf", name = "q4-file"}]   # GGUF files / local model directories

    [measure]
    corpora = ["prose", "code"]           # built-in corpus names or text files
    contexts = [512, 2048]                # context lengths (tokens per window)
    chunks = [1, 1]                       # windows per corpus, one entry per context length

    [[benchmarks]]                        # built-in tasks, run per prompt with fidelity
    task = "humaneval-mc"
    limit = 100

    [[ingest]]                            # or outcome files from another tool
    format = "lm-eval"
    path = "results/q4"
    model = "q4-file"
    reference = false

    [analysis]
    k = 0                                 # lowest-k silent zone size; 0 = automatic
    band = 0.99                           # band rule: score >= band x reference score
    n_boot = 2000                         # bootstrap resamples
    seed = 0
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from quantfid.errors import QuantfidError

Preset = Literal["quick", "default", "full"]


@dataclass(frozen=True)
class ReferenceConfig:
    model: str = "embedded"
    dtype: str = "float32"
    device: str = "auto"


@dataclass(frozen=True)
class QuantFile:
    path: str
    name: str | None = None


@dataclass(frozen=True)
class BenchTask:
    task: str
    limit: int | None = None


@dataclass(frozen=True)
class IngestSource:
    format: str
    path: str
    model: str
    reference: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisConfig:
    k: int = 0
    band: float = 0.99
    n_boot: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; ``hash_inputs()`` of its parts key the units of work."""

    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    recipes: tuple[str, ...] = ()
    files: tuple[QuantFile, ...] = ()
    corpora: tuple[str, ...] = ()
    contexts: tuple[int, ...] = (512, 2048)
    chunks: tuple[int, ...] = (1, 1)
    benchmarks: tuple[BenchTask, ...] = ()
    ingest: tuple[IngestSource, ...] = ()
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    preset: str = "custom"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def windows(self, ctx: int) -> int:
        """Windows per corpus at context length ``ctx``."""
        return self.chunks[self.contexts.index(ctx)]


# ---- presets ------------------------------------------------------------------------------

QUICK_RECIPES_WANTED = 8


def _default_recipes(preset: Preset) -> tuple[str, ...]:
    from quantfid.quantize import DEFAULT_COHORT

    names = tuple(DEFAULT_COHORT)
    if preset != "quick":
        return names
    return _spread(names, QUICK_RECIPES_WANTED)


def _spread(names: tuple[str, ...], n: int) -> tuple[str, ...]:
    """``n`` names evenly spaced over ``names`` (which run from most to fewest bits or back)."""
    if len(names) <= n:
        return names
    idx = sorted({round(i * (len(names) - 1) / (n - 1)) for i in range(n)})
    return tuple(names[i] for i in idx)


def _default_corpora() -> tuple[str, ...]:
    from quantfid import corpus

    return tuple(corpus.builtin_names())


QUICK_PROMPTS_PER_TASK = 12
# long prompts (whole functions) get fewer in the quick preset
QUICK_LIMITS = {"humaneval_mc": 4}


def _default_tasks(preset: Preset) -> tuple[BenchTask, ...]:
    """Every built-in task: ``quick`` a dozen prompts each, ``default`` each task's default
    size, ``full`` its full size."""
    from quantfid.study import builtin_tasks

    tasks = builtin_tasks()
    out = []
    for name in sorted(tasks):
        t = tasks[name]
        limit = {"quick": QUICK_LIMITS.get(name, QUICK_PROMPTS_PER_TASK), "default": int(t.n_default),
                 "full": int(t.n_full)}[preset]
        out.append(BenchTask(task=name, limit=limit))
    return tuple(out)


PRESET_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "quick": {"contexts": (128, 256), "chunks": (1, 1)},
    "default": {"contexts": (512, 2048), "chunks": (1, 1)},
    "full": {"contexts": (512, 2048), "chunks": (8, 2)},
}


def preset(name: Preset = "default") -> StudyConfig:
    """The built-in configuration: ``quick`` (the test suite's), ``default`` or ``full``."""
    if name not in PRESET_SIZES:
        raise QuantfidError(f"unknown preset {name!r}; choose quick, default or full")
    sizes = PRESET_SIZES[name]
    n_boot = {"quick": 500, "default": 2000, "full": 10000}[name]
    return StudyConfig(recipes=_default_recipes(name), corpora=_default_corpora(),
                       contexts=sizes["contexts"], chunks=sizes["chunks"],
                       benchmarks=_default_tasks(name), analysis=AnalysisConfig(n_boot=n_boot),
                       preset=name)


# ---- TOML in and out -------------------------------------------------------------------------

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
    known = {"reference", "quants", "measure", "benchmarks", "ingest", "analysis"}
    extra = set(data) - known
    _expect(not extra, where, f"unknown table(s) {sorted(extra)}; expected {sorted(known)}")
    cfg = preset(base)
    changes: dict[str, Any] = {"preset": "custom"}

    ref = data.get("reference", {})
    _expect(isinstance(ref, dict), where, "[reference] must be a table")
    _unknown(ref, {"model", "dtype", "device"}, f"{where} [reference]")
    changes["reference"] = ReferenceConfig(
        model=str(ref.get("model", cfg.reference.model)),
        dtype=str(ref.get("dtype", cfg.reference.dtype)),
        device=str(ref.get("device", cfg.reference.device)))

    q = data.get("quants", {})
    _expect(isinstance(q, dict), where, "[quants] must be a table")
    _unknown(q, {"recipes", "files"}, f"{where} [quants]")
    if "recipes" in q:
        rec = q["recipes"]
        if rec == "default":
            rec = list(cfg.recipes)
        _expect(isinstance(rec, list) and all(isinstance(r, str) for r in rec), where,
                "[quants] recipes must be a list of recipe names (or \"default\")")
        changes["recipes"] = tuple(rec)
    if "files" in q:
        files = []
        for i, f in enumerate(q["files"]):
            f = {"path": f} if isinstance(f, str) else f
            _expect(isinstance(f, dict) and "path" in f, where,
                    f"[quants] files[{i}] needs a path (a GGUF file or a model directory)")
            _unknown(f, {"path", "name"}, f"{where} [quants] files[{i}]")
            files.append(QuantFile(path=str(f["path"]), name=f.get("name")))
        changes["files"] = tuple(files)

    m = data.get("measure", {})
    _expect(isinstance(m, dict), where, "[measure] must be a table")
    _unknown(m, {"corpora", "contexts", "chunks"}, f"{where} [measure]")
    if "corpora" in m:
        _expect(isinstance(m["corpora"], list), where, "[measure] corpora must be a list")
        changes["corpora"] = tuple(str(c) for c in m["corpora"])
    contexts = tuple(m.get("contexts", cfg.contexts))
    _expect(all(isinstance(c, int) and c >= 8 for c in contexts), where,
            f"[measure] contexts must be integers >= 8, got {list(contexts)}")
    chunks = m.get("chunks", cfg.chunks if contexts == cfg.contexts else [1] * len(contexts))
    if isinstance(chunks, int):
        chunks = [chunks] * len(contexts)
    _expect(len(chunks) == len(contexts) and all(isinstance(c, int) and c >= 1 for c in chunks),
            where, f"[measure] chunks must be one positive integer per context length "
                   f"({len(contexts)}), got {chunks}")
    changes["contexts"], changes["chunks"] = contexts, tuple(chunks)

    if "benchmarks" in data:
        tasks = []
        for i, b in enumerate(data["benchmarks"]):
            _expect(isinstance(b, dict) and "task" in b, where, f"[[benchmarks]] #{i + 1} needs a task")
            _unknown(b, {"task", "limit"}, f"{where} [[benchmarks]] #{i + 1}")
            lim = b.get("limit")
            _expect(lim is None or (isinstance(lim, int) and lim > 0), where,
                    f"[[benchmarks]] #{i + 1} limit must be a positive integer")
            tasks.append(BenchTask(task=str(b["task"]), limit=lim))
        changes["benchmarks"] = tuple(tasks)

    if "ingest" in data:
        srcs = []
        for i, s in enumerate(data["ingest"]):
            _expect(isinstance(s, dict) and {"format", "path", "model"} <= set(s), where,
                    f"[[ingest]] #{i + 1} needs format, path and model")
            opts = {k: v for k, v in s.items() if k not in {"format", "path", "model", "reference"}}
            srcs.append(IngestSource(format=str(s["format"]), path=str(s["path"]),
                                     model=str(s["model"]), reference=bool(s.get("reference", False)),
                                     options=opts))
        changes["ingest"] = tuple(srcs)

    a = data.get("analysis", {})
    _expect(isinstance(a, dict), where, "[analysis] must be a table")
    _unknown(a, {"k", "band", "n_boot", "seed"}, f"{where} [analysis]")
    an = AnalysisConfig(k=int(a.get("k", cfg.analysis.k)), band=float(a.get("band", cfg.analysis.band)),
                        n_boot=int(a.get("n_boot", cfg.analysis.n_boot)),
                        seed=int(a.get("seed", cfg.analysis.seed)))
    _expect(0 < an.band <= 1, where, f"[analysis] band must be in (0, 1], got {an.band}")
    _expect(an.n_boot >= 0 and an.k >= 0, where, "[analysis] k and n_boot must be >= 0")
    changes["analysis"] = an
    out = dataclasses.replace(cfg, **changes)
    _expect(bool(out.recipes or out.files or out.ingest), where, "the study has no quants")
    return out


def _unknown(d: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise QuantfidError(f"{where}: unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}")


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        if len(v) > 4 and all(isinstance(x, str) for x in v):
            return "[\n" + "".join(f"  {_toml_value(x)},\n" for x in v) + "]"
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {v!r} as TOML")


def to_toml(cfg: StudyConfig) -> str:
    """The configuration as a TOML file that ``load`` reads back to an equal config."""
    lines = [f"# quantfid study configuration (preset: {cfg.preset}).",
             "# Every table is optional; what is left out takes the default preset's value.", "",
             "[reference]",
             "# embedded | FILE.gguf | a local model directory | a hub id (needs network)",
             f"model = {_toml_value(cfg.reference.model)}",
             f"dtype = {_toml_value(cfg.reference.dtype)}",
             f"device = {_toml_value(cfg.reference.device)}", "",
             "[quants]", "# cohort recipes applied to the reference (quantfid cohort list)",
             f"recipes = {_toml_value(list(cfg.recipes))}",
             "# GGUF files or local model directories: [{path = \"q.gguf\", name = \"q\"}]",
             "files = [" + ", ".join(_toml_value({"path": f.path, **({"name": f.name} if f.name else {})})
                                    for f in cfg.files) + "]", "",
             "[measure]", "# built-in corpus names or text files",
             f"corpora = {_toml_value(list(cfg.corpora))}",
             f"contexts = {_toml_value(list(cfg.contexts))}",
             "# windows per corpus, one per context length",
             f"chunks = {_toml_value(list(cfg.chunks))}", ""]
    for b in cfg.benchmarks:
        lines += ["[[benchmarks]]", f"task = {_toml_value(b.task)}"]
        if b.limit is not None:
            lines.append(f"limit = {b.limit}")
        lines.append("")
    for s in cfg.ingest:
        lines += ["[[ingest]]", f"format = {_toml_value(s.format)}", f"path = {_toml_value(s.path)}",
                  f"model = {_toml_value(s.model)}", f"reference = {_toml_value(s.reference)}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in s.options.items()]
        lines.append("")
    a = cfg.analysis
    lines += ["[analysis]", "# k: size of the lowest-k silent zone (0 = automatic); band: fraction "
              "of the reference score", f"k = {a.k}", f"band = {a.band!r}", f"n_boot = {a.n_boot}",
              f"seed = {a.seed}", ""]
    return "\n".join(lines)
