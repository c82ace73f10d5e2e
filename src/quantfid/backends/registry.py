"""Backends by name: ``open_backend(spec)`` builds the runtime a model spec asks for.

Built-in names (imported lazily, so listing them imports no runtime): ``hf`` (transformers +
torch, CPU or CUDA), ``llamacpp`` (llama-cpp-python in-process), ``http`` (an inference server:
vLLM, SGLang, llama-cpp-python's server). :func:`register` adds another: a factory taking a
:class:`quantfid.models.ModelSpec` and returning a :class:`~quantfid.backends.base.Backend`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from quantfid.errors import QuantfidError

if TYPE_CHECKING:
    from quantfid.backends.base import Backend
    from quantfid.models import ModelSpec

Factory = Callable[["ModelSpec"], "Backend"]

_BUILTIN: dict[str, str] = {
    "hf": "quantfid.backends.hf:open_hf",
    "llamacpp": "quantfid.backends.llamacpp:open_llamacpp",
    "http": "quantfid.backends.http:open_http",
}
_EXTRA: dict[str, Factory] = {}


def names() -> list[str]:
    """Every registered backend name."""
    return sorted({*_BUILTIN, *_EXTRA})


def register(name: str, factory: Factory) -> None:
    """Register ``factory`` under ``name`` (replacing a previous registration)."""
    _EXTRA[name] = factory


def factory(name: str) -> Factory:
    """The factory registered under ``name``."""
    if name in _EXTRA:
        return _EXTRA[name]
    target = _BUILTIN.get(name)
    if target is None:
        raise QuantfidError(f"unknown backend {name!r}; choose one of {', '.join(names())}")
    mod, attr = target.split(":")
    fn: Factory = getattr(importlib.import_module(mod), attr)
    return fn


def open_backend(spec: ModelSpec) -> Backend:
    """A loaded backend running ``spec`` (its ``backend`` field names the runtime)."""
    return factory(spec.backend)(spec)
