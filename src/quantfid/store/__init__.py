"""On-disk formats: the workspace, reference log-prob stores, llama.cpp's kld-base file.

Names are imported lazily so that ``import quantfid`` (and ``quantfid --help``) stays
light: the stores pull in numba kernels.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "CompactStore": "compact", "CompactStoreWriter": "compact",
    "FullStore": "full", "FullStoreWriter": "full",
    "KldBase": "llamacpp", "KldBaseWriter": "llamacpp",
    "StoreMeta": "meta", "check_compatible": "meta",
    "Workspace": "workspace",
}
__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'quantfid.store' has no attribute {name!r}")
    return getattr(importlib.import_module(f"quantfid.store.{_NAMES[name]}"), name)
