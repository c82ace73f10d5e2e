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

def load(path: str | Path, base: Preset = "default") -> StudyConfig:
    """Read a study TOML file; tables and keys left out take ``base``'s values
    (validation: :mod:`quantfid.config_parse`)."""
    from quantfid.config_parse import load as _load

    return _load(path, base)


def from_dict(data: dict[str, Any], where: str = "config", base: Preset = "default") -> StudyConfig:
    """Validate a parsed TOML document against the layout in this module's docstring."""
    from quantfid.config_parse import from_dict as _from_dict

    return _from_dict(data, where, base)


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
