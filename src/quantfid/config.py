"""The study's configuration: a TOML file (read with tomllib) or one of three presets.

Layout of the file (every table optional; what is left out takes the default preset's value)::

    [reference]
    model = "embedded"        # embedded | FILE.gguf | local model directory | hub id
    dtype = "float32"         # float32 | bfloat16 | float16
    device = "auto"           # auto | cpu | cuda

    [quants]
    recipes = ["Q8_0", "Q4_K_M"]          # cohort recipe names applied to the reference
    numerics = "auto"                     # auto | weights | ggml-cpu (for recipes and files)

    [[models]]                            # more quants: GGUF files, model directories, hub
    spec = "q4.gguf"                      # ids, server URLs (each with its backend)
    name = "q4-file"
    backend = "llamacpp"                  # hf | llamacpp | http (default: by the spec)

    [measure]
    corpora = ["prose", "code"]           # built-in corpus names or text files
    contexts = [512, 2048]                # context lengths (tokens per window)
    chunks = [1, 1]                       # windows per corpus, one entry per context length
    noise_floor = true                    # also the reference against itself, bf16-rounded

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
    resolution = 0.05                     # a silent zone is resolved when its minimum
                                          # detectable effect is <= this x the reference score

    [executor]                            # where units run
    kind = "local"                        # local | ray
    address = ""                          # ray: the cluster (empty: start one here)
    num_cpus = 1                          # ray: resources per unit
    num_gpus = 0
    memory = 0                            # ray: bytes per unit (0: not reserved)
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
DTYPES = ("float32", "bfloat16", "float16")
NUMERICS = ("auto", "weights", "ggml-cpu")


@dataclass(frozen=True)
class ReferenceConfig:
    model: str = "embedded"
    dtype: str = "float32"
    device: str = "auto"


@dataclass(frozen=True)
class ModelEntry:
    """A ``[[models]]`` entry: any model spec (file, directory, hub id, URL) with options."""

    spec: str
    name: str | None = None
    backend: str | None = None
    dtype: str | None = None
    numerics: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


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
    resolution: float = 0.05


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"
    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0


@dataclass(frozen=True)
class StudyConfig:
    """Everything a study needs; ``hash_inputs()`` of its parts key the units of work."""

    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    recipes: tuple[str, ...] = ()
    numerics: str = "auto"
    models: tuple[ModelEntry, ...] = ()
    corpora: tuple[str, ...] = ()
    contexts: tuple[int, ...] = (512, 2048)
    chunks: tuple[int, ...] = (1, 1)
    noise_floor: bool = True
    benchmarks: tuple[BenchTask, ...] = ()
    ingest: tuple[IngestSource, ...] = ()
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    preset: str = "custom"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    from quantfid.bench.tasks import DEFAULT_TASKS, get_task

    out = []
    for name in sorted(DEFAULT_TASKS):
        t = get_task(name)
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
             "# auto: ggml-cpu (llama.cpp's CPU numerics) for GGML types, weights otherwise",
             f"numerics = {_toml_value(cfg.numerics)}", "",
             "[measure]", "# built-in corpus names or text files",
             f"corpora = {_toml_value(list(cfg.corpora))}",
             f"contexts = {_toml_value(list(cfg.contexts))}",
             "# windows per corpus, one per context length",
             f"chunks = {_toml_value(list(cfg.chunks))}",
             "# the noise floor: the reference against itself with bf16 rounding after each layer",
             f"noise_floor = {_toml_value(cfg.noise_floor)}", ""]
    for b in cfg.benchmarks:
        lines += ["[[benchmarks]]", f"task = {_toml_value(b.task)}"]
        if b.limit is not None:
            lines.append(f"limit = {b.limit}")
        lines.append("")
    for e in cfg.models:
        lines += ["[[models]]", f"spec = {_toml_value(e.spec)}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in (("name", e.name), ("backend", e.backend),
                  ("dtype", e.dtype), ("numerics", e.numerics), *e.options.items())
                  if v is not None]
        lines.append("")
    for s in cfg.ingest:
        lines += ["[[ingest]]", f"format = {_toml_value(s.format)}", f"path = {_toml_value(s.path)}",
                  f"model = {_toml_value(s.model)}", f"reference = {_toml_value(s.reference)}"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in s.options.items()]
        lines.append("")
    a = cfg.analysis
    lines += ["[analysis]", "# k: size of the lowest-k silent zone (0 = automatic); band: fraction "
              "of the reference score", f"k = {a.k}", f"band = {a.band!r}", f"n_boot = {a.n_boot}",
              f"seed = {a.seed}",
              "# a silent zone is resolved when its minimum detectable effect is at most this "
              "fraction of the reference's score", f"resolution = {a.resolution!r}", ""]
    x = cfg.executor
    lines += ["[executor]", "# local | ray (address: a running cluster; empty starts one here)",
              f"kind = {_toml_value(x.kind)}", f"address = {_toml_value(x.address)}",
              f"num_cpus = {x.num_cpus!r}", f"num_gpus = {x.num_gpus!r}", f"memory = {x.memory}", ""]
    return "\n".join(lines)
