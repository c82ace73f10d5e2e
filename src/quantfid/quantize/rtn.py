"""Round-to-nearest (RTN) integer quantization with per-group scales.

Each row of a weight is cut into groups of ``group`` consecutive values (the last group of
a row is shorter when ``group`` does not divide the row). Per group:

- symmetric: ``scale = max|x| / qmax`` with ``qmax = 2**(bits-1) - 1``, stored as float16;
  ``q = clamp(round(x / scale), -qmax, qmax)``; ``x' = q * scale``.
- asymmetric: ``lo = min x`` and ``scale = (max x - min x) / (2**bits - 1)``, both stored as
  float16; ``q = clamp(round((x - lo) / scale), 0, 2**bits - 1)``; ``x' = lo + q * scale``.

Rounding is half-to-even (numpy/torch ``round``). A zero scale gives ``q = 0``. Storage:
``bits`` per value plus 16 bits (symmetric) or 32 bits (asymmetric) per group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from quantfid.errors import QuantfidError

BITS = (2, 3, 4, 5, 6, 8)
GROUPS = (32, 64, 128)


@dataclass(frozen=True)
class RTNConfig:
    """bits per value, group size, symmetric or not."""

    bits: int
    group: int
    symmetric: bool

    def __post_init__(self) -> None:
        if self.bits not in BITS:
            raise QuantfidError(f"RTN bits must be one of {BITS}, got {self.bits}")
        if self.group not in GROUPS:
            raise QuantfidError(f"RTN group size must be one of {GROUPS}, got {self.group}")

    @property
    def name(self) -> str:
        """``rtn-w4g64-asym`` style name."""
        return f"rtn-w{self.bits}g{self.group}-{'sym' if self.symmetric else 'asym'}"

    @classmethod
    def parse(cls, text: str) -> RTNConfig:
        """Inverse of :attr:`name`."""
        try:
            head, wg, kind = text.split("-")
            bits, group = wg[1:].split("g")
            if head != "rtn" or wg[0] != "w" or kind not in ("sym", "asym"):
                raise ValueError
            return cls(int(bits), int(group), kind == "sym")
        except ValueError:
            raise QuantfidError(f"not an RTN scheme: {text!r} (expected e.g. rtn-w4g64-asym)") from None

    def n_bytes(self, rows: int, n_per_row: int) -> float:
        """Storage in bytes of a (rows, n_per_row) weight (a fraction when bits don't pack)."""
        groups = math.ceil(n_per_row / self.group)
        meta = 16 if self.symmetric else 32
        return rows * (n_per_row * self.bits + groups * meta) / 8


def rtn_quantize(weight: torch.Tensor, cfg: RTNConfig) -> torch.Tensor:
    """Quantize -> dequantize a 2-D float tensor with RTN; returns a float32 tensor, same shape."""
    if weight.ndim != 2:
        raise QuantfidError(f"RTN quantization needs a 2-D weight, got shape {tuple(weight.shape)}")
    w = weight.detach().to(torch.float32)
    rows, n = w.shape
    g = cfg.group
    pad = (-n) % g
    # pad the last group with copies of its first value: min/max/absmax are unchanged
    if pad:
        last_start = n - (n % g)
        fill = w[:, last_start:last_start + 1].expand(rows, pad)
        w = torch.cat([w, fill], dim=1)
    x = w.reshape(rows, -1, g)
    if cfg.symmetric:
        qmax = 2 ** (cfg.bits - 1) - 1
        scale = (x.abs().amax(dim=2, keepdim=True) / qmax).to(torch.float16).to(torch.float32)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.where(scale > 0, torch.clamp(torch.round(x / safe), -qmax, qmax), 0.0)
        out = q * scale
    else:
        levels = 2 ** cfg.bits - 1
        lo = x.amin(dim=2, keepdim=True).to(torch.float16).to(torch.float32)
        hi = x.amax(dim=2, keepdim=True)
        scale = ((hi - lo) / levels).to(torch.float16).to(torch.float32)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.where(scale > 0, torch.clamp(torch.round((x - lo) / safe), 0, levels), 0.0)
        out = lo + q * scale
    return out.reshape(rows, -1)[:, :n].contiguous()


def rtn_quantize_numpy(weight: np.ndarray, cfg: RTNConfig) -> np.ndarray:
    """numpy convenience wrapper around :func:`rtn_quantize`."""
    return rtn_quantize(torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)), cfg).numpy()
