"""Importance matrix, as llama.cpp's ``llama-imatrix`` computes it.

For every ``nn.Linear`` the model runs, each input column j gets the mean over all input
rows (tokens) of x_j**2: ``sum_tokens x_j**2 / n_tokens``, accumulated in float64. The
output projection is skipped unless ``process_output`` (llama-imatrix's ``--process-output``).
Entries are keyed by GGUF tensor name where the tensor has one (``blk.0.attn_q.weight``), so
llama.cpp imatrix files (legacy ``.dat`` or GGUF, read by libgguf) load into the same object.

Saved as ``imatrix.npz``: one float32 array per tensor plus ``__meta__`` (JSON: format
version, chunks, tokens, corpus hash) and ``__counts__`` (tokens per entry).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantfid.atomic import atomic_open
from quantfid.errors import FormatError, QuantfidError
from quantfid.hashing import hash_bytes
from quantfid.quantize.names import TensorInfo, gguf_name

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Imatrix:
    """Importance vectors (mean squared input activation per weight column) by tensor name."""

    values: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def hash(self) -> str:
        h = [f"{k}:{hash_bytes(np.ascontiguousarray(v, dtype=np.float32).tobytes())}"
             for k, v in sorted(self.values.items())]
        return hash_bytes("\n".join(h).encode())

    def lookup(self, t: TensorInfo) -> np.ndarray | None:
        """The vector of tensor ``t`` (by GGUF name, then HF name), or None (llama.cpp then
        quantizes that tensor without one). A vector of the wrong length is an error."""
        v = self.values.get(t.gguf or "") if t.gguf else None
        if v is None:
            v = self.values.get(t.name)
        if v is None:
            return None
        if v.shape != (t.n_per_row,):
            raise QuantfidError(f"imatrix entry for {t.name} has {v.size} values, the tensor has "
                                f"rows of {t.n_per_row}: the imatrix is for another model")
        return v

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {k: np.asarray(v, dtype=np.float32) for k, v in self.values.items()}
        arrays["__meta__"] = np.frombuffer(json.dumps({"format_version": FORMAT_VERSION,
                                                       **self.meta}).encode(), dtype=np.uint8)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]


def load_imatrix(path: str | Path) -> Imatrix:
    """Read ``imatrix.npz`` (quantfid) or a llama.cpp imatrix file (``.dat`` or ``.gguf``)."""
    p = Path(path)
    if not p.is_file():
        raise QuantfidError(f"imatrix file not found: {p}")
    if p.suffix == ".npz":
        try:
            with np.load(p) as z:
                meta = json.loads(bytes(z["__meta__"]).decode()) if "__meta__" in z else {}
                values = {k: np.asarray(z[k], dtype=np.float32) for k in z.files if not k.startswith("__")}
        except (OSError, ValueError, KeyError) as e:
            raise FormatError(f"{p}: not a quantfid imatrix: {e}") from e
        if meta.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise FormatError(f"{p}: imatrix format_version {meta['format_version']} is newer "
                              f"than this quantfid reads ({FORMAT_VERSION})")
        return Imatrix(values, meta)
    import libgguf

    try:
        values = libgguf.load_imatrix(p)
    except (OSError, ValueError) as e:
        raise FormatError(f"{p}: not a llama.cpp imatrix file: {e}") from e
    return Imatrix({k: np.asarray(v, dtype=np.float32) for k, v in values.items()},
                   {"source": str(p), "format": "llama.cpp"})


class _Collector:
    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def hook(self, name: str) -> Any:
        def fn(_mod: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach()
            x = x.reshape(-1, x.shape[-1]).to(torch.float64)
            s = (x * x).sum(dim=0)
            if name in self.sums:
                self.sums[name] += s
            else:
                self.sums[name] = s
            self.counts[name] = self.counts.get(name, 0) + int(x.shape[0])
        return fn


def compute_imatrix(module: torch.nn.Module, windows: Iterable[np.ndarray],
                    process_output: bool = False, progress: bool = True,
                    meta: dict[str, Any] | None = None) -> Imatrix:
    """Run ``module`` over ``windows`` (int64 token id arrays, (B, n_ctx) or (n_ctx,)) and
    collect the mean squared input of every Linear layer's columns."""
    from quantfid.progress import track

    col = _Collector()
    handles = []
    names = {id(p): n for n, p in module.named_parameters()}
    out_mod = getattr(module, "lm_head", None)
    for mod_name, mod in module.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        if mod is out_mod and not process_output:
            continue
        pname = names.get(id(mod.weight), f"{mod_name}.weight")
        if mod is out_mod:
            pname = "lm_head.weight"
        key = gguf_name(pname) or pname
        handles.append(mod.register_forward_pre_hook(col.hook(key)))
    dev = next(module.parameters()).device
    n_chunks = 0
    try:
        with torch.no_grad():
            items = list(windows)
            it = track(items, total=len(items), desc="imatrix", unit="chunk") if progress else items
            for w in it:
                ids = torch.as_tensor(np.atleast_2d(w), dtype=torch.long, device=dev)
                module(input_ids=ids)
                n_chunks += ids.shape[0]
    finally:
        for h in handles:
            h.remove()
    if not col.sums:
        raise QuantfidError("no Linear layer ran: cannot compute an importance matrix")
    values = {k: (s / col.counts[k]).to(torch.float32).cpu().numpy() for k, s in col.sums.items()}
    info = {"chunks": n_chunks, "tokens_per_entry": max(col.counts.values()), **(meta or {})}
    return Imatrix(values, info)
