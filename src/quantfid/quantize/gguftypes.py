"""The per-tensor types of a GGUF file, by GGUF name and by HF parameter name.

So a GGUF loaded through transformers (which dequantizes it) can run under ``ggml-cpu``
numerics by each tensor's type (:func:`quantfid.quantize.numerics.apply_numerics`), and the
presets can be checked against llama.cpp's own files.

Only the header is read (GGUF v2/v3: magic, version, counts, metadata entries skipped by
their types, then the tensor infos), so a file's types come in milliseconds, not the seconds
gguf-py's reader spends decoding a vocabulary.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from quantfid.errors import QuantfidError
from quantfid.quantize.names import hf_name

#: byte sizes of GGUF's fixed-size metadata value types (by type id)
_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str) -> int:
        (v,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(v)

    def string(self) -> str:
        n = self.take("Q")
        s = bytes(self.buf[self.pos:self.pos + n]).decode("utf-8")
        self.pos += n
        return s

    def skip(self, n: int) -> None:
        self.pos += n

    def skip_value(self, vtype: int) -> None:
        if vtype in _FIXED:
            self.pos += _FIXED[vtype]
        elif vtype == _STRING:
            self.skip(self.take("Q"))
        elif vtype == _ARRAY:
            item, n = self.take("I"), self.take("Q")
            if item in _FIXED:
                self.skip(n * _FIXED[item])
            else:
                for _ in range(n):
                    self.skip_value(item)
        else:
            raise ValueError(f"unknown metadata value type {vtype}")


def gguf_tensor_types(path: str | Path) -> dict[str, str]:
    """GGUF tensor name -> GGML type name (``Q4_K``, ``F32``...) of every tensor in ``path``."""
    from gguf import GGMLQuantizationType

    p = Path(path)
    if not p.is_file():
        raise QuantfidError(f"GGUF file not found: {p}")
    try:
        with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF":
                raise ValueError("no GGUF magic")
            cur = _Cursor(buf)
            cur.pos = 4
            if cur.take("I") not in (2, 3):
                raise ValueError("unsupported GGUF version")
            n_tensors, n_kv = cur.take("Q"), cur.take("Q")
            for _ in range(n_kv):
                cur.string()
                cur.skip_value(cur.take("I"))
            out: dict[str, str] = {}
            for _ in range(n_tensors):
                name = cur.string()
                cur.skip(8 * cur.take("I"))           # dims
                out[name] = GGMLQuantizationType(cur.take("I")).name
                cur.pos += 8                          # offset
            return out
    except (ValueError, struct.error, UnicodeDecodeError, OSError) as e:
        raise QuantfidError(f"{p}: not a readable GGUF file: {e}") from e


def gguf_types(path: str | Path) -> dict[str, str]:
    """HF parameter name -> GGML type of every tensor of ``path`` with an HF (Llama) name; the
    form ``Recipe.type_map`` and ``QuantReport.types`` have. A GGUF without ``output.weight``
    (tied embeddings) lists only the embedding, whose type the tied head computes with."""
    out: dict[str, str] = {}
    for name, typ in gguf_tensor_types(path).items():
        hf = hf_name(name)
        if hf is not None:
            out[hf] = typ
    return out
