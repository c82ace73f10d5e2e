"""The inputs every chunk reduction takes: (P, V) logits and (P,) next-token ids.

Logits come as numpy arrays or torch tensors of any float dtype. On the CPU they reach the
numba kernels as float32 or float64 numpy rows without a copy where possible (float16 and
bfloat16 are widened to float32, once per chunk); tensors on another device (CUDA) stay
there and go to the torch implementations (:mod:`quantfid.metrics.device`). torch is never
imported here, so the stores stay light for callers that pass numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantfid.errors import MismatchError, QuantfidError


def is_tensor(x: Any) -> bool:
    """A torch tensor (duck-typed: torch is not imported)."""
    return hasattr(x, "detach") and hasattr(x, "device")


def on_device(x: Any) -> bool:
    """A torch tensor outside host memory (CUDA, ...): reduced there, with torch."""
    return is_tensor(x) and x.device.type != "cpu"


def shape2(x: Any, what: str) -> tuple[int, int]:
    """(P, V) of a two-dimensional array, else a MismatchError naming ``what``."""
    shape = tuple(int(s) for s in getattr(x, "shape", ()))
    if len(shape) != 2:
        raise MismatchError(f"{what} must be a (positions, vocab) array, got shape {shape}")
    if shape[1] < 1:
        raise MismatchError(f"{what}: vocab size must be at least 1")
    return shape[0], shape[1]


def host_rows(x: Any, what: str) -> np.ndarray:
    """C-contiguous float32/float64 numpy rows of a host array or CPU tensor (a view when the
    input already is one; float16/bfloat16 widened to float32)."""
    if is_tensor(x):
        x = x.detach()
        if str(x.dtype) not in ("torch.float32", "torch.float64"):
            if not x.is_floating_point():
                raise QuantfidError(f"{what}: expected floating point values, got {x.dtype}")
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        if not np.issubdtype(arr.dtype, np.floating):
            raise QuantfidError(f"{what}: expected floating point values, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr)


def check_targets(targets: Any, n: int, vocab: int, what: str = "targets") -> np.ndarray:
    """(n,) int64 next-token ids; -1 means unknown. Any other id outside [0, vocab) is a
    MismatchError naming its position."""
    if is_tensor(targets):
        targets = targets.detach().cpu().numpy()
    t = np.asarray(targets)
    if t.shape != (n,):
        raise MismatchError(f"{what} must have shape ({n},) to match the logits, got {t.shape}")
    if n and not np.issubdtype(t.dtype, np.integer):
        raise QuantfidError(f"{what} must be integer token ids, got dtype {t.dtype}")
    t = t.astype(np.int64)
    out = (t < -1) | (t >= vocab)
    if out.any():
        i = int(np.argmax(out))
        raise MismatchError(f"{what}: token id {int(t[i])} at position {i} is outside the "
                            f"vocabulary (size {vocab})")
    return t


def raise_bad(rows: np.ndarray, flags: np.ndarray, what: str, offset: int = 0) -> None:
    """QuantfidError naming the first flagged row's first NaN/infinity."""
    i = int(np.argmax(flags != 0))
    row = rows[i]
    mask = ~np.isfinite(row)
    if mask.any():
        j = int(np.argmax(mask))
        raise QuantfidError(f"non-finite value {row[j]!r} in {what} at token position "
                            f"{offset + i} (vocab index {j})")
    raise QuantfidError(f"{what} at token position {offset + i} are too large to normalise "
                        "(magnitudes near the float64 limit)")
