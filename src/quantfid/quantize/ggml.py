"""llama.cpp's GGML quantization types: quantize -> dequantize rows through libgguf.

libgguf (native code, numpy in and out) implements ggml's quantizers; a test proves it
matches llama.cpp's own Python quantizers (``gguf.quants``) byte for byte on the types both
have. A GGML type quantizes each row of a weight matrix (GGUF's ``ne[0]``, which is
``in_features`` of a torch ``nn.Linear`` weight of shape (out, in)) in blocks of 32 or 256
values; bits per weight = block bytes x 8 / block size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from quantfid.errors import QuantfidError

#: GGML types quantfid can quantize to (libgguf implements them all), lowest to highest id.
GGML_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
              "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
              "IQ1_M", "TQ1_0", "TQ2_0", "MXFP4")

#: Types llama.cpp refuses to produce without an importance matrix (``tensor_requires_imatrix``
#: in src/llama-quant.cpp; Q2_K only inside a Q2_K_S file, handled by the preset).
REQUIRES_IMATRIX = frozenset({"IQ3_XXS", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_M", "IQ1_S"})

#: llama.cpp's fallback when a row length is not a multiple of the type's block
#: (``tensor_type_fallback``): the 256-block types go to a 32-block type.
FALLBACK = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL",
    "IQ2_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


# libgguf builds the IQ lattice tables lazily on a type's first use, without a lock: two
# threads quantizing a fresh IQ type at once crash. The first use of each type is serialized.
_READY: set[str] = set()
_INIT_LOCK = threading.Lock()


def _ensure_ready(name: str, block: int) -> None:
    if name in _READY:
        return
    import libgguf

    with _INIT_LOCK:
        if name not in _READY:
            row = np.linspace(-1.0, 1.0, block, dtype=np.float32)[None, :]
            libgguf.quantize_rows(row, libgguf.GGMLQuantizationType[name],
                                  imatrix=np.ones(block, dtype=np.float32))
            _READY.add(name)


@dataclass(frozen=True)
class GGMLType:
    """One GGML type: block size (values) and block bytes."""

    name: str
    block_size: int
    block_bytes: int

    @property
    def bits_per_weight(self) -> float:
        return self.block_bytes * 8 / self.block_size

    def fits(self, n_per_row: int) -> bool:
        """Whether a row of ``n_per_row`` values is a whole number of blocks."""
        return n_per_row % self.block_size == 0

    def row_bytes(self, n_per_row: int) -> int:
        return n_per_row // self.block_size * self.block_bytes


def ggml_type(name: str) -> GGMLType:
    """The :class:`GGMLType` called ``name`` (``Q4_K``...); QuantfidError if unknown."""
    import libgguf

    if name not in GGML_TYPES:
        raise QuantfidError(f"unknown GGML type {name!r}; known: {', '.join(GGML_TYPES)}")
    block, size = libgguf.GGML_QUANT_SIZES[libgguf.GGMLQuantizationType[name]]
    return GGMLType(name, int(block), int(size))


def fallback_type(name: str, n_per_row: int) -> str:
    """llama.cpp's type for a row of ``n_per_row`` values when ``name`` is asked for.

    The type itself when the row is whole blocks, else its fallback; ``F16`` when even the
    fallback does not fit (llama.cpp's last resort; rows not a multiple of 32 are rare).
    """
    if ggml_type(name).fits(n_per_row):
        return name
    if name not in FALLBACK:
        raise QuantfidError(f"no fallback is defined for type {name} with rows of {n_per_row}")
    new = FALLBACK[name]
    return new if ggml_type(new).fits(n_per_row) else "F16"


def quantize(weight: np.ndarray, name: str, imatrix: np.ndarray | None = None) -> np.ndarray:
    """Quantize the rows of a 2-D float32 array to GGML type ``name``.

    Returns uint8 of shape (rows, row_bytes). ``imatrix`` (one importance per column, the
    mean squared input activation) weights the rounding error as in llama.cpp.
    """
    import libgguf

    w = np.ascontiguousarray(weight, dtype=np.float32)
    if w.ndim != 2:
        raise QuantfidError(f"GGML quantization needs a 2-D weight, got shape {w.shape}")
    t = ggml_type(name)
    if not t.fits(w.shape[1]):
        raise QuantfidError(f"rows of {w.shape[1]} values are not a multiple of {name}'s "
                            f"block of {t.block_size}")
    if name in REQUIRES_IMATRIX and imatrix is None:
        raise QuantfidError(f"type {name} requires an importance matrix")
    im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32)
    _ensure_ready(name, t.block_size)
    return libgguf.quantize_rows(w, libgguf.GGMLQuantizationType[name], imatrix=im)


def dequantize(data: np.ndarray, name: str, n_per_row: int) -> np.ndarray:
    """Expand GGML-quantized rows (uint8, (rows, row_bytes)) back to float32 (rows, n_per_row)."""
    import libgguf

    return libgguf.dequantize_rows(np.ascontiguousarray(data, dtype=np.uint8),
                                   libgguf.GGMLQuantizationType[name], n_per_row)
