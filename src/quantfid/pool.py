"""Opening models for units: the one place a recipe becomes a quant.

A :class:`ModelPool` knows the reference spec. It loads the reference once and keeps it; it
opens one quant at a time (closing the previous one), and builds recipe quants from the
reference's torch module: one working copy of the module serves the whole cohort, each
recipe rewriting every quantizable tensor from the untouched reference (a deep copy per
recipe would cost the model's size each time). Numerics (``ggml-cpu`` or ``weights``) are
applied where the module is built, by :func:`apply_numerics`.

It also gives every model's identity (:meth:`ModelPool.ref_of`: content hash + backend
identity) and workspace record (:meth:`ModelPool.record`) without running the model: a
recipe's type map, bits per weight and bytes follow from the reference's shape.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantfid.backends import registry
from quantfid.backends.base import Backend, ModuleBackend, require
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_file, hash_json
from quantfid.models import (
    ModelRef,
    ModelSpec,
    file_hash,
    identity,
    resolve_numerics,
)
from quantfid.records import Model


def apply_numerics(module: Any, types: dict[str, str] | None, numerics: str) -> Any:
    """Make ``module`` compute under ``numerics`` (``weights``: as it is). ``types``: HF
    parameter name -> scheme (None: every weight is float, as a reference)."""
    if numerics == "weights":
        return None
    try:
        from quantfid.quantize import numerics as num
    except ImportError as e:
        raise QuantfidError(f"numerics {numerics!r} is not available in this build ({e})") from e
    return num.apply_numerics(module, types, numerics)


@dataclass(frozen=True)
class PoolSpec:
    """What it takes to rebuild a pool elsewhere (a worker process or machine): picklable."""

    reference: ModelSpec | None
    imatrix: str | None
    reference_numerics: str | None

    def build(self) -> ModelPool:
        pool = ModelPool(self.reference, imatrix=self.imatrix)
        if self.reference_numerics is not None and self.reference is not None:
            pool.set_reference_numerics(self.reference_numerics)
        return pool


class ModelPool:
    """Opens the models of a plan (see the module docstring)."""

    def __init__(self, reference: ModelSpec | None, *, imatrix: str | Path | None = None,
                 progress: bool = False) -> None:
        self.reference_spec = reference
        self.imatrix_path = imatrix
        self.progress = progress
        self._ref: Backend | None = None
        self._ref_handle: Any = None
        self._ref_numerics: str | None = None
        self._imatrix: Any = None
        self._work: Any = None  # the working copy recipes quantize in place
        self._current: tuple[str, Backend] | None = None
        self._handle: Any = None
        self._shape: Any = None

    def spec(self) -> PoolSpec:
        """A picklable description that rebuilds this pool (same reference, numerics, imatrix)."""
        im = None if self.imatrix_path is None else str(Path(self.imatrix_path).resolve())
        return PoolSpec(self.reference_spec, im, self._ref_numerics)

    # ---- the reference ------------------------------------------------------------------
    def set_reference_numerics(self, numerics: str) -> None:
        """Numerics a torch reference runs under (``ggml-cpu``: f16 K/V as llama-perplexity);
        a runtime that computes natively keeps its own."""
        spec = self._need_reference()
        if spec.backend != "hf" or numerics == self._ref_numerics:
            return
        if self._ref is not None:
            if self._ref_handle is not None:
                self._ref_handle.remove()
            self._ref_handle = apply_numerics(self._ref.module, None, numerics)  # type: ignore[attr-defined]
            self._ref.numerics = numerics  # type: ignore[attr-defined]
        self._ref_numerics = numerics

    def reference(self) -> Backend:
        """The reference backend (loaded once)."""
        if self._ref is None:
            spec = self._need_reference()
            n = self._ref_numerics or resolve_numerics(spec)
            self._ref_numerics = n
            self._ref, self._ref_handle = self._open_file(spec, n, types=None)
        return self._ref

    def noise_ref(self, perturb: str = "bf16-layers") -> ModelRef:
        """The noise-floor twin: the reference under its own numerics plus ``perturb``
        (:mod:`quantfid.perturb`), measured against the reference like a quant."""
        ref = self.ref_ref()
        spec = dataclasses.replace(ref.spec, id="noise-floor", role="quant",
                                   options={**ref.spec.options, "perturb": perturb})
        return ModelRef(spec, hash_json({"reference": ref.content, "perturb": perturb}),
                        ref.identity)

    def _need_reference(self) -> ModelSpec:
        if self.reference_spec is None:
            raise QuantfidError("this needs a reference model (give --reference)")
        return self.reference_spec

    def ref_ref(self) -> ModelRef:
        """The reference's identity."""
        spec = self._need_reference()
        n = self._ref_numerics or resolve_numerics(spec)
        self._ref_numerics = n
        return ModelRef(spec, self.content(spec), identity(spec, n))

    # ---- identities -------------------------------------------------------------------------
    def _imatrix_obj(self) -> Any:
        if self.imatrix_path is not None and self._imatrix is None:
            from quantfid.quantize.imatrix import load_imatrix

            self._imatrix = load_imatrix(self.imatrix_path)
        return self._imatrix

    def shape(self) -> Any:
        """The reference module's quantizable tensors (loads the reference)."""
        if self._shape is None:
            from quantfid.quantize import model_shape

            ref = self.reference()
            require(ref, "module")
            self._shape = model_shape(ref.module)  # type: ignore[attr-defined]
        return self._shape

    def recipe_types(self, spec: ModelSpec) -> dict[str, str]:
        from quantfid.quantize import get_recipe

        return get_recipe(spec.source).type_map(self.shape(), has_imatrix=self._imatrix_obj()
                                                is not None)

    def content(self, spec: ModelSpec) -> str:
        """Content hash: a recipe's type map + reference + importance matrix; a file's hash; a
        server's model id + probe (asks the server)."""
        if spec.kind == "recipe":
            from quantfid.quantize.apply import quant_hash

            im = self._imatrix_obj()
            return quant_hash(self.recipe_types(spec), self.content(self._need_reference()),
                              im.hash if im is not None else None)
        if spec.kind == "url":
            return self._server(spec).info.hash or spec.source
        return file_hash(spec)

    def ref_of(self, spec: ModelSpec) -> ModelRef:
        """A quant's identity (its numerics resolved; a server's from the server itself:
        dialect and top-K are part of how it is measured)."""
        if spec.kind == "url":
            spec = self._with_tokenizer(spec)
            b = self._server(spec)
            return ModelRef(spec, self.content(spec), b.identity())
        types = self.recipe_types(spec) if spec.kind == "recipe" else None
        n = resolve_numerics(spec, types)
        return ModelRef(spec, self.content(spec), identity(spec, n))

    def _with_tokenizer(self, spec: ModelSpec) -> ModelSpec:
        """A server quant checks its vocabulary against a local tokenizer: the reference's,
        unless the spec names one (option ``tokenizer``)."""
        ref = self.reference_spec
        if spec.option("tokenizer") or ref is None or ref.kind == "url":
            return spec
        return spec.with_options(tokenizer="embedded" if ref.kind == "embedded" else ref.source)

    def _server(self, spec: ModelSpec) -> Backend:
        """A server backend, opened once per spec (opening asks the server who it is)."""
        key = repr(sorted(spec.options.items())) + spec.source + spec.id
        servers: dict[str, Backend] = self.__dict__.setdefault("_servers", {})
        if key not in servers:
            servers[key] = registry.open_backend(spec)
        return servers[key]

    # ---- opening ------------------------------------------------------------------------------
    def open(self, ref: ModelRef) -> Backend:
        """The backend running ``ref`` (the reference stays loaded; one quant at a time)."""
        if ref.spec.role == "reference":
            return self.reference()
        if self._current is not None and self._current[0] == ref.key:
            return self._current[1]
        self.release()
        if ref.spec.option("perturb"):
            backend = self._build_noise(ref)
        elif ref.spec.kind == "recipe":
            backend = self._build_recipe(ref)
        elif ref.spec.kind == "url":
            backend = self._server(ref.spec)
        else:
            backend, self._handle = self._open_file(ref.spec, ref.identity.numerics, types=None)
        self._check_tokenizer(backend)
        self._current = (ref.key, backend)
        return backend

    def release(self) -> None:
        """Close the quant opened last (the reference stays)."""
        if self._current is not None:
            if self._current[1].name != "http":  # servers stay open (cheap to keep)
                self._current[1].close()  # a recipe's backend drops its handle, not the copy
            self._current = None

    def _open_file(self, spec: ModelSpec, numerics: str,
                   types: dict[str, str] | None) -> tuple[Backend, Any]:
        """A file-like model's backend and its numerics handle (None: as loaded)."""
        backend = registry.open_backend(spec)
        handle = None
        if spec.backend == "hf" and numerics != "weights":
            if spec.kind == "gguf":
                from quantfid.quantize.gguftypes import gguf_types

                types = gguf_types(spec.source)
            handle = apply_numerics(backend.module, types, numerics)  # type: ignore[attr-defined]
            backend.numerics = numerics  # type: ignore[attr-defined]
        return backend, handle

    def _work_copy(self) -> Any:
        """The working copy recipes and the noise twin rewrite (made once, without the
        reference's numerics hooks, which a deep copy would carry along)."""
        if self._work is None:
            from quantfid.quantize import QuantCache

            mb: Any = self.reference()
            if self._ref_handle is not None:
                self._ref_handle.remove()
            self._work = copy.deepcopy(mb.module)
            self._ref_handle = apply_numerics(mb.module, None, self._ref_numerics or "weights")
            self._qcache = QuantCache()
        return self._work

    def _build_noise(self, ref: ModelRef) -> Backend:
        from quantfid.perturb import Perturbation

        base: Any = self.reference()
        work = self._work_copy()
        src = dict(base.module.named_parameters())
        import torch

        with torch.no_grad():
            for name, p in work.named_parameters():
                p.copy_(src[name])
        self._work_hooks(apply_numerics(work, None, ref.identity.numerics),
                         Perturbation(work, ref.spec.option("perturb")))
        info = Model(id=ref.id, role="quant", source=f"noise:{ref.spec.option('perturb')}",
                     format="noise", hash=ref.content, extra=ref.identity.to_json())
        out: Backend = base.with_module(work, info, numerics=ref.identity.numerics)
        return out

    def _work_hooks(self, *handles: Any) -> None:
        """Replace the hooks on the working copy (the previous model's numerics or noise)."""
        for h in getattr(self, "_work_handles", ()):
            if h is not None:
                h.remove()
        self._work_handles = handles

    def _build_recipe(self, ref: ModelRef) -> Backend:
        from quantfid.quantize import get_recipe, quantize_model

        base = self.reference()
        require(base, "module")
        mb: ModuleBackend = base  # type: ignore[assignment]
        work = self._work_copy()
        self._work_hooks()
        rep = quantize_model(work, get_recipe(ref.spec.source), self._imatrix_obj(),
                             cache=self._qcache, reference_hash=self.content(
                                 self._need_reference()), progress=self.progress,
                             source=mb.module)
        self._work_hooks(apply_numerics(work, rep.types, ref.identity.numerics))
        return mb.with_module(work, self.record(ref), numerics=ref.identity.numerics)

    def _check_tokenizer(self, backend: Backend) -> None:
        if self.reference_spec is None or self._ref is None:
            return
        from quantfid.backends.hf import check_same_tokenizer

        ref = self._ref
        if backend.vocab_size() != ref.vocab_size():
            from quantfid.errors import MismatchError

            raise MismatchError(f"{backend.info.id!r} has a vocabulary of {backend.vocab_size()}, "
                                f"the reference {ref.info.id!r} {ref.vocab_size()}")
        check_same_tokenizer(ref.tokenizer_id(), ref.info.id, backend.tokenizer_id(),
                             backend.info.id)

    # ---- records --------------------------------------------------------------------------
    def record_of(self, unit: Any) -> Model | None:
        """The workspace record a unit registers (None for the noise-floor twin)."""
        return None if unit.model.spec.option("perturb") else self.record(unit.model)

    def record(self, ref: ModelRef) -> Model:
        """The workspace record of ``ref`` (computed without running it)."""
        spec, idn = ref.spec, ref.identity
        extra: dict[str, Any] = {**idn.to_json()}
        if spec.kind == "recipe":
            from quantfid.quantize import get_recipe
            from quantfid.quantize.recipe import scheme_bytes

            shape = self.shape()
            types = self.recipe_types(spec)
            q_bytes = sum(scheme_bytes(types[t.name], t) for t in shape.tensors)
            n_q = sum(t.numel for t in shape.tensors)
            total = q_bytes + 4.0 * shape.other_params
            counts: dict[str, int] = {}
            for s in types.values():
                counts[s] = counts.get(s, 0) + 1
            extra.update(quantized_bits_per_weight=8.0 * q_bytes / n_q,
                         type_counts=dict(sorted(counts.items())))
            base = self.reference().info
            return Model(id=spec.id, role="quant", source=f"recipe:{spec.source}@{base.id}",
                         format="recipe", scheme=get_recipe(spec.source).name,
                         bits_per_weight=8.0 * total / (n_q + shape.other_params),
                         bytes=round(total), hash=ref.content, extra=extra)
        fmt = {"embedded": "gguf", "gguf": "gguf", "dir": "hf", "hub": "hf", "url": "server"}
        src = spec.source
        if spec.kind == "embedded":
            from quantfid import embedded

            src = f"embedded:{embedded.gguf_path().name}"
        elif spec.kind in ("gguf", "dir"):
            src = str(Path(spec.source).resolve())
        size = Path(spec.source).stat().st_size if spec.kind == "gguf" else None
        scheme = "f32-from-Q4_1" if spec.kind == "embedded" else None
        m = Model(id=spec.id, role=spec.role, source=src, format=fmt[spec.kind], scheme=scheme,
                  bytes=size, hash=ref.content, extra=extra)
        if spec.role == "reference":
            m = dataclasses.replace(m, bits_per_weight=32.0 if spec.dtype == "float32" else 16.0)
        return m


__all__ = ["ModelPool", "apply_numerics", "hash_file"]
