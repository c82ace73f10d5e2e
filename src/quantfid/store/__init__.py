"""On-disk formats: the workspace, reference log-prob stores, llama.cpp's kld-base file."""

from quantfid.store.compact import CompactStore, CompactStoreWriter
from quantfid.store.full import FullStore, FullStoreWriter
from quantfid.store.llamacpp import KldBase, KldBaseWriter
from quantfid.store.meta import StoreMeta, check_compatible
from quantfid.store.workspace import Workspace

__all__ = ["CompactStore", "CompactStoreWriter", "FullStore", "FullStoreWriter", "KldBase",
           "KldBaseWriter", "StoreMeta", "Workspace", "check_compatible"]
