"""Quantize a torch model in place with a recipe, and report exactly what was done.

Every quantizable weight (see :mod:`quantfid.quantize.names`) is replaced by its
quantize -> dequantize round trip (float32), so the module runs as before but computes with
the quantized values. Bits per weight count the stored bytes of every weight (GGML blocks
with their scales, RTN values with their group scales/offsets), float parameters (norms) at
32 bits, and a tied embedding once.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from quantfid.errors import QuantfidError
from quantfid.hashing import hash_array, hash_json
from quantfid.progress import track
from quantfid.quantize import ggml
from quantfid.quantize.imatrix import Imatrix
from quantfid.quantize.names import ModelShape, TensorInfo, model_shape
from quantfid.quantize.recipe import Recipe, scheme_bytes
from quantfid.quantize.rtn import RTNConfig, rtn_quantize


@dataclass(frozen=True)
class QuantReport:
    """What :func:`quantize_model` did.

    types: HF tensor name -> scheme. bits_per_weight: 8 x stored bytes / elements over every
    parameter (tied embedding once, norms at 32 bits); quantized_bits_per_weight: the same over
    the quantized tensors only. hash: sha256 of the type map, the reference hash and the
    importance matrix hash (two quants with equal hashes hold equal weights).
    data: GGML quantized bytes per tensor (only with ``keep_data=True``; not in ``to_json``).
    """

    recipe: str
    types: dict[str, str]
    bits_per_weight: float
    quantized_bits_per_weight: float
    bytes: int
    n_weights: int
    hash: str
    reference_hash: str | None = None
    imatrix_hash: str | None = None
    gguf_names: dict[str, str] = field(default_factory=dict)
    data: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def type_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.types.values():
            out[s] = out.get(s, 0) + 1
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "bits_per_weight": self.bits_per_weight,
                "quantized_bits_per_weight": self.quantized_bits_per_weight,
                "bytes": self.bytes, "n_weights": self.n_weights, "hash": self.hash,
                "reference_hash": self.reference_hash, "imatrix_hash": self.imatrix_hash,
                "type_counts": self.type_counts(), "types": self.types}


def quant_hash(types: dict[str, str], reference_hash: str | None, imatrix_hash: str | None) -> str:
    """Content hash of a quant: its type map, its reference and its importance matrix."""
    return hash_json({"types": types, "reference": reference_hash, "imatrix": imatrix_hash})


class QuantCache:
    """GGML quantized bytes keyed by (weight content, type, importance vector), least recently
    used first out once ``max_bytes`` is exceeded: recipes that share a (tensor, type) choice
    quantize it once."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> np.ndarray | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def put(self, key: tuple[str, str, str], value: np.ndarray) -> None:
        with self._lock:
            if key in self._items or value.nbytes > self.max_bytes:
                return
            self._items[key] = value
            self._size += value.nbytes
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= old.nbytes


def _ggml(w: np.ndarray, scheme: str, im: np.ndarray | None, cache: QuantCache | None,
          w_key: str | None) -> np.ndarray:
    key = None
    if cache is not None:
        key = (w_key or hash_array(w), scheme, "" if im is None else hash_array(im))
        hit = cache.get(key)
        if hit is not None:
            return hit
    data = ggml.quantize(w, scheme, im)
    if cache is not None and key is not None:
        cache.put(key, data)
    return data


def quantize_tensor(weight: torch.Tensor, scheme: str, imatrix: np.ndarray | None = None,
                    cache: QuantCache | None = None,
                    cache_key: str | None = None) -> tuple[torch.Tensor, np.ndarray | None]:
    """Quantize -> dequantize one 2-D weight with ``scheme``; returns (float32 values, GGML bytes
    or None for non-GGML schemes). ``cache_key`` names the weight's content in ``cache``
    (default: a hash of the weight)."""
    if scheme == "F32":
        return weight.detach().to(torch.float32), None
    if scheme == "F16":
        return weight.detach().to(torch.float16).to(torch.float32), None
    if scheme.startswith("rtn-"):
        return rtn_quantize(weight, RTNConfig.parse(scheme)), None
    w = weight.detach().to(torch.float32).cpu().numpy()
    data = _ggml(w, scheme, imatrix, cache, cache_key)
    return torch.from_numpy(ggml.dequantize(data, scheme, w.shape[1])), data


def quantize_model(module: torch.nn.Module, recipe: Recipe, imatrix: Imatrix | None = None, *,
                   cache: QuantCache | None = None, reference_hash: str | None = None,
                   keep_data: bool = False, progress: bool = True,
                   shape: ModelShape | None = None, threads: int | None = None,
                   source: torch.nn.Module | None = None) -> QuantReport:
    """Quantize ``module`` in place with ``recipe`` (pass a deep copy of the reference).

    Quantization runs in float32; the results are stored in the module's own dtype (float32
    keeps them exact; a bfloat16 module rounds them again).

    imatrix: importance per weight column (see :mod:`quantfid.quantize.imatrix`), used by
    every GGML type that can use one; without it a recipe needing one raises QuantfidError.
    cache: shares GGML results across recipes. reference_hash: the content hash of the
    reference ``module`` is an unmodified copy of; with a cache, (reference_hash, tensor name)
    names each weight instead of hashing its bytes. threads: GGML tensors quantized at once
    (libgguf releases the GIL; default: the CPU count, at most 4). source: read the float
    weights from this module (same architecture) instead of ``module``, so one working copy
    serves a whole cohort without a deep copy per recipe.
    """
    shape = shape or model_shape(module)
    has_im = imatrix is not None
    missing = recipe.needs_imatrix(shape) if not has_im else []
    if missing:
        raise QuantfidError(f"recipe {recipe.name} needs an importance matrix for {len(missing)} "
                            f"tensors (e.g. {missing[0]}); compute one with `quantfid cohort imatrix`")
    types = recipe.type_map(shape, has_imatrix=has_im)
    params = dict(module.named_parameters())
    src_params = dict(source.named_parameters()) if source is not None else params
    infos: list[TensorInfo] = list(shape.tensors)
    for t in infos:
        if t.name not in params or t.name not in src_params:
            raise QuantfidError(f"tensor {t.name} of the model shape is not in the module")
        if src_params[t.name].shape != params[t.name].shape:
            raise QuantfidError(f"source tensor {t.name} has shape {tuple(src_params[t.name].shape)}, "
                                f"the module's is {tuple(params[t.name].shape)}")
    data: dict[str, np.ndarray] = {}

    def work(t: TensorInfo) -> tuple[torch.Tensor, np.ndarray | None]:
        scheme = types[t.name]
        im = imatrix.lookup(t) if imatrix is not None and scheme in ggml.GGML_TYPES else None
        key = f"{reference_hash}:{t.name}" if reference_hash else None
        with torch.no_grad():
            return quantize_tensor(src_params[t.name].data, scheme, im, cache, key)

    n_threads = threads or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_threads) as pool:
        results = pool.map(work, infos)
        items = track(zip(infos, results, strict=True), total=len(infos),
                      desc=f"quantize {recipe.name}", unit="tensor") if progress else zip(infos, results, strict=True)
        for t, (values, raw) in items:
            p = params[t.name]
            with torch.no_grad():
                p.data.copy_(values.to(p.dtype).to(p.device))
            if keep_data and raw is not None:
                data[t.name] = raw
    q_bytes = sum(scheme_bytes(types[t.name], t) for t in infos)
    n_q = sum(t.numel for t in infos)
    total_bytes = q_bytes + 4.0 * shape.other_params
    n_all = n_q + shape.other_params
    im_hash = imatrix.hash if imatrix is not None else None
    return QuantReport(
        recipe=recipe.name, types=types, bits_per_weight=8.0 * total_bytes / n_all,
        quantized_bits_per_weight=8.0 * q_bytes / n_q, bytes=round(total_bytes),
        n_weights=int(n_all),
        hash=quant_hash(types, reference_hash, im_hash),
        reference_hash=reference_hash, imatrix_hash=im_hash,
        gguf_names={t.name: t.gguf for t in infos if t.gguf},
        data=data if keep_data else None)
