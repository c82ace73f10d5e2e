"""Model specs: one parser, one identity, one place that opens a model (recipes applied here).

A *spec* is what a user writes (``--quant``, ``--reference``, ``[[models]]`` in a study
config); :func:`parse_spec` turns it into a :class:`ModelSpec` once, and every command opens
models through :func:`open_model`. Kinds:

``embedded``  the embedded default reference (``embedded`` or nothing given)
``gguf``      a ``.gguf`` file (transformers dequantizes it, or llama.cpp runs it)
``dir``       a local model directory (transformers)
``hub``       a hub id ``org/name`` (needs network)
``recipe``    a cohort recipe applied to the reference (``Q4_K_M``, ``rtn-w4g64-asym``,
              ``recipe:NAME``); built only by :func:`open_model`
``url``       an inference server (``http://``, ``https://``)

Identity (:func:`content_hash`): a file's sha256, a directory's file hashes, a recipe's type
map with its reference's and importance matrix's hashes, a hub id with its revision, a
server's model id with its probe log-probs. A unit's hash adds the backend's
:class:`~quantfid.backends.base.Identity` (backend, dtype, device type, numerics).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from quantfid.backends.base import Identity
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_json
from quantfid.records import Role

Kind = Literal["embedded", "gguf", "dir", "hub", "recipe", "url"]
KINDS: tuple[str, ...] = ("embedded", "gguf", "dir", "hub", "recipe", "url")
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
NUMERICS: tuple[str, ...] = ("auto", "weights", "ggml-cpu")


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec (see the module docstring).

    id: the name every table uses. source: path, hub id, recipe name or URL. backend: the
    registry name of the runtime. dtype/device: for torch backends. numerics: ``auto`` (the
    default for the kind: ``ggml-cpu`` for GGML recipes and GGUF files through transformers,
    ``weights`` otherwise), ``weights`` or ``ggml-cpu``; runtimes that compute natively
    (llama.cpp, servers) ignore it. options: backend options (server dialect, API-key
    variable, top-K, concurrency, n_ctx, ...).
    """

    id: str
    kind: Kind
    source: str
    role: Role = "quant"
    backend: str = "hf"
    dtype: str = "float32"
    device: str = "auto"
    numerics: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def with_options(self, **kw: Any) -> ModelSpec:
        return dataclasses.replace(self, options={**self.options, **kw})

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def recipe_name(spec: str) -> str | None:
    """The recipe ``spec`` names (``recipe:NAME`` or a bare known recipe name), else None."""
    from quantfid.quantize import get_recipe

    name = spec[len("recipe:"):] if spec.startswith("recipe:") else spec
    if not spec.startswith("recipe:") and ("/" in spec or Path(spec).exists()):
        return None
    try:
        get_recipe(name)
    except QuantfidError:
        if spec.startswith("recipe:"):
            raise
        return None
    return name


def _kind(spec: str) -> Kind:
    if spec in ("", "embedded"):
        return "embedded"
    if is_url(spec):
        return "url"
    if recipe_name(spec) is not None:
        return "recipe"
    p = Path(spec)
    if p.is_dir():
        return "dir"
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            from quantfid.gguf_check import check_gguf

            check_gguf(p)  # a truncated or corrupt GGUF: FormatError naming the file (exit 2)
            return "gguf"
        raise QuantfidError(f"{spec} is a file but not a .gguf; give a GGUF file, a model "
                            "directory, a hub id, a recipe name or a server URL")
    if p.suffix.lower() == ".gguf":
        raise QuantfidError(f"GGUF file not found: {spec}")
    if "/" in spec and not spec.startswith(("/", ".", "~")) and spec.count("/") == 1:
        return "hub"
    from quantfid.quantize import list_recipes

    raise QuantfidError(f"{spec!r} is neither a file, a directory, a hub id (org/name), a server "
                        f"URL nor a recipe (recipes: {', '.join(r.name for r in list_recipes())})")


def default_id(kind: Kind, source: str) -> str:
    if kind == "embedded":
        from quantfid import embedded

        return embedded.MODEL_ID
    if kind == "recipe":
        return source
    if kind == "url":
        return source.split("://", 1)[1].rstrip("/").replace("/", "_").replace(":", "_")
    p = Path(source)
    if kind == "gguf":
        return p.stem
    return p.name if kind == "dir" else source


def default_backend(kind: Kind) -> str:
    return "http" if kind == "url" else "hf"


def parse_spec(spec: str | None, *, role: Role = "quant", name: str | None = None,
               backend: str | None = None, dtype: str = "float32", device: str = "auto",
               numerics: str = "auto", **options: Any) -> ModelSpec:
    """Parse what a user wrote into a :class:`ModelSpec` (validated; nothing is loaded)."""
    from quantfid.backends import registry

    text = "embedded" if spec is None else str(spec).strip()
    kind = _kind(text)
    source = recipe_name(text) or text if kind == "recipe" else text
    if kind == "recipe" and role == "reference":
        raise QuantfidError(f"{text!r} is a recipe: the reference must be a model (recipes are "
                            "applied to it)")
    be = backend or default_backend(kind)
    if be not in registry.names():
        raise QuantfidError(f"unknown backend {be!r}; choose one of {', '.join(registry.names())}")
    if dtype not in DTYPES:
        raise QuantfidError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if numerics not in NUMERICS:
        raise QuantfidError(f"unknown numerics {numerics!r}; choose one of {', '.join(NUMERICS)}")
    if numerics == "ggml-cpu" and dtype != "float32":
        raise QuantfidError(f"--numerics ggml-cpu emulates llama.cpp's float32 CPU backend: it "
                            f"needs --dtype float32, not {dtype}")
    if kind == "url" and be != "http":
        raise QuantfidError(f"{text} is a server URL: it runs on the http backend, not {be!r}")
    if be == "http" and kind != "url":
        raise QuantfidError(f"the http backend needs a server URL (http://host:port), not {text!r}")
    if be == "llamacpp" and kind not in ("gguf", "embedded"):
        raise QuantfidError(f"the llamacpp backend runs GGUF files, not {text!r}")
    return ModelSpec(id=name or default_id(kind, source), kind=kind, source=source, role=role,
                     backend=be, dtype=dtype, device=device, numerics=numerics,
                     options={k: v for k, v in options.items() if v is not None})


# ---- identity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRef:
    """A model as units see it: its spec, its content hash and how it is run.

    ``key`` (content + backend identity) goes into every unit hash: the same weights run on
    another backend, dtype, device type or numerics are another measurement; so are torch
    CPU runs with torch's default float32 product (``QUANTFID_CPU_GEMM=default``), which sums
    in another order than oneDNN (:mod:`quantfid.backends.cpu_gemm`).
    """

    spec: ModelSpec
    content: str
    identity: Identity

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def key(self) -> str:
        extra: dict[str, str] = {}
        if self.identity.backend == "hf" and self.identity.device == "cpu":
            from quantfid.backends.cpu_gemm import product

            extra = {} if product() == "onednn" else {"cpu_gemm": product()}
        return hash_json({"content": self.content, **self.identity.to_json(), **extra})


def resolve_numerics(spec: ModelSpec, types: dict[str, str] | None = None) -> str:
    """The concrete numerics of ``spec``: ``native`` for runtimes that compute in their own
    types; else the spec's choice, ``auto`` meaning ``ggml-cpu`` for GGML recipes (``types``:
    the recipe's type map), GGUF files through transformers and the embedded reference (a
    GGUF), ``weights`` otherwise. (A study or measure also runs a reference under ``ggml-cpu``
    when any of its quants does: llama-perplexity keeps K/V in f16 for both sides.)"""
    if spec.backend != "hf":
        return "native"
    if spec.numerics != "auto":
        return spec.numerics
    if spec.dtype != "float32":  # llama.cpp's CPU backend computes in float32
        return "weights"
    if spec.kind in ("gguf", "embedded"):
        # a GGUF runs as llama.cpp runs it (the embedded reference: F32 weights, f16 K/V)
        return "ggml-cpu"
    if spec.kind == "recipe" and types is not None:
        from quantfid.quantize.ggml import GGML_TYPES

        return "ggml-cpu" if any(t in GGML_TYPES for t in types.values()) else "weights"
    return "weights"


def identity(spec: ModelSpec, numerics: str) -> Identity:
    """The backend identity ``spec`` will run with (no model is loaded)."""
    if spec.backend == "hf":
        from quantfid.backends.hf import resolve_device

        return Identity("hf", spec.dtype, resolve_device(spec.device).type, numerics)
    if spec.backend == "llamacpp":
        return Identity("llamacpp", "native", "cpu", "native")
    return Identity(spec.backend, "native", "remote" if spec.kind == "url" else "cpu", "native")


def file_hash(spec: ModelSpec) -> str:
    """Content hash of a file-like spec (GGUF, directory, hub id, the embedded model)."""
    from quantfid.hashing import hash_file

    if spec.kind == "embedded":
        from quantfid import embedded

        return hash_file(embedded.gguf_path())
    if spec.kind == "gguf":
        return hash_file(spec.source)
    if spec.kind == "dir":
        from quantfid.backends.hf import hash_dir

        return hash_dir(Path(spec.source))
    if spec.kind == "hub":
        return hash_json({"hub": spec.source, "revision": spec.option("revision")})
    raise QuantfidError(f"{spec.id}: a {spec.kind} has no file to hash")


def spec_from_record(model: Any) -> ModelSpec:
    """The spec that reopens a workspace model record (``quantfid.records.Model``) the way it
    was run: its source, and the backend, dtype, device and numerics in its ``extra``."""
    src = str(model.source or "")
    extra = dict(model.extra or {})
    kind: Kind
    if src.startswith("embedded:"):
        kind, source = "embedded", "embedded"
    elif model.format == "recipe" or src.startswith("recipe:"):
        kind = "recipe"
        source = src[len("recipe:"):].split("@", 1)[0] if src.startswith("recipe:") else str(
            model.scheme or model.id)
    elif model.format == "server" or is_url(src):
        kind, source = "url", src
    elif model.format == "gguf":
        kind, source = "gguf", src
    elif model.format == "hf" and Path(src).is_dir():
        kind, source = "dir", src
    elif model.format == "hf" and src:
        kind, source = "hub", src
    else:
        raise QuantfidError(f"cannot run model {model.id!r} (format {model.format!r}, source "
                            f"{src!r}); its per-prompt data must come from ingest")
    be = extra.get("backend") or default_backend(kind)
    numerics = extra.get("numerics", "auto")
    return ModelSpec(id=model.id, kind=kind, source=source, role=model.role, backend=be,
                     dtype=extra.get("dtype", "float32") if be == "hf" else "float32",
                     device=extra.get("device", "auto") if be == "hf" else "auto",
                     numerics=numerics if numerics in NUMERICS else "auto")
