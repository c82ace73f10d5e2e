"""Arrays from ``.npy`` and ``.safetensors`` files, read defensively (``quantfid stats``).

Both readers parse the header themselves, check every length, shape and offset against the
file's size before anything is mapped, and return a read-only memory map (no copy; float16
and bfloat16 safetensors are widened to float32, the one copy, of the size the file implies).
Anything malformed -- truncated, trailing bytes, an object or structured dtype, a shape that
does not fit the data, a header that is not what it claims -- is a
:class:`~quantfid.errors.FormatError` naming the file and what is wrong.

Dtypes: booleans, signed and unsigned integers, float16/32/64 (and safetensors' BF16).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.errors import FormatError

NPY_MAX_HEADER = 1 << 16      # numpy writes headers of a few hundred bytes
ST_MAX_HEADER = 100 << 20     # the safetensors library's own limit
_NUMERIC_KINDS = "biuf"
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8",
              "I32": "<i4", "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4",
              "U16": "<u2", "U8": "u1", "BOOL": "?"}


def _n_elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape)  # Python ints: no overflow


def _mapped(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...], offset: int,
            order: str = "C") -> np.ndarray:
    if _n_elements(shape) == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype, "r", offset, shape, order)  # type: ignore[call-overload]


def load_npy(path: Path) -> np.ndarray:
    """A ``.npy`` file as a read-only memory map (see the module doc)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(10)
        if len(head) < 10 or head[:6] != b"\x93NUMPY":
            raise FormatError(f"{path}: not a .npy file (no \\x93NUMPY magic; {size} bytes)")
        major = head[6]
        if major == 1:
            hlen, start = struct.unpack("<H", head[8:10])[0], 10
        elif major in (2, 3):
            more = fh.read(2)
            if len(more) < 2:
                raise FormatError(f"{path}: truncated .npy header")
            hlen, start = struct.unpack("<I", head[8:10] + more)[0], 12
        else:
            raise FormatError(f"{path}: .npy format version {major}.{head[7]} is not supported")
        if hlen > NPY_MAX_HEADER or start + hlen > size:
            raise FormatError(f"{path}: .npy header length {hlen} does not fit the file "
                              f"({size} bytes)")
        raw = fh.read(hlen)
    shape, fortran, dtype = _npy_header(path, raw, major)
    offset = start + hlen
    need = _n_elements(shape) * dtype.itemsize
    if size - offset != need:
        what = "truncated" if size - offset < need else "has trailing bytes"
        raise FormatError(f"{path}: .npy data {what}: shape {shape} of {dtype} needs {need} "
                          f"bytes after the header, the file has {size - offset}")
    return _mapped(path, dtype, shape, offset, "F" if fortran else "C")


def _npy_header(path: Path, raw: bytes, major: int) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    import ast
    import warnings

    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        with warnings.catch_warnings():  # e.g. an invalid escape in a corrupt header
            warnings.simplefilter("ignore")
            d = ast.literal_eval(text)
    except (UnicodeDecodeError, ValueError, SyntaxError, TypeError, MemoryError,
            RecursionError) as e:
        raise FormatError(f"{path}: unreadable .npy header ({type(e).__name__})") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise FormatError(f"{path}: .npy header is not a dict of descr, fortran_order, shape")
    shape = d["shape"]
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise FormatError(f"{path}: .npy shape {shape!r} is not a tuple of sizes")
    if not isinstance(d["fortran_order"], bool):
        raise FormatError(f"{path}: .npy fortran_order {d['fortran_order']!r} is not a bool")
    descr = d["descr"]
    if not isinstance(descr, str):
        raise FormatError(f"{path}: .npy dtype {descr!r}: only plain numeric dtypes are read")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError) as e:
        raise FormatError(f"{path}: .npy dtype {descr!r} is not a numpy dtype ({e})") from None
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise FormatError(f"{path}: .npy dtype {descr!r}: expected booleans, integers or floats")
    return shape, d["fortran_order"], dtype


def safetensors_header(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensors' entries (name -> dtype, shape, data_offsets), checked against the file,
    and the offset where the data starts."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise FormatError(f"{path}: not a .safetensors file ({size} bytes, no header length)")
        (n,) = struct.unpack("<Q", head)
        if n > ST_MAX_HEADER or 8 + n > size:
            raise FormatError(f"{path}: .safetensors header length {n} does not fit the file "
                              f"({size} bytes)")
        raw = fh.read(n)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"{path}: .safetensors header is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise FormatError(f"{path}: .safetensors header is not a JSON object")
    data_len = size - 8 - n
    out: dict[str, dict[str, Any]] = {}
    for name, entry in meta.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: entry is not an object")
        dt, shape, offs = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dt not in _ST_DTYPES:
            raise FormatError(f"{where}: dtype {dt!r} is not read (supported: "
                              f"{', '.join(_ST_DTYPES)})")
        if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
            raise FormatError(f"{where}: shape {shape!r} is not a list of sizes")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1] <= data_len):
            raise FormatError(f"{where}: data_offsets {offs!r} outside the {data_len} data bytes")
        need = _n_elements(tuple(shape)) * np.dtype(_ST_DTYPES[dt]).itemsize
        if offs[1] - offs[0] != need:
            raise FormatError(f"{where}: shape {shape} of {dt} needs {need} bytes, "
                              f"data_offsets give {offs[1] - offs[0]}")
        out[name] = {"dtype": dt, "shape": tuple(shape), "data_offsets": tuple(offs)}
    return out, 8 + n


def load_safetensors(path: Path, keys: tuple[str, ...] = ()) -> np.ndarray:
    """The file's one tensor, or the first of ``keys`` it holds (see the module doc)."""
    entries, start = safetensors_header(path)
    if len(entries) == 1:
        name = next(iter(entries))
    else:
        found = [k for k in keys if k in entries]
        if not found:
            raise FormatError(f"{path} holds {len(entries)} tensors {sorted(entries)[:8]}; "
                              f"name one of {keys} or keep a single tensor")
        name = found[0]
    e = entries[name]
    arr = _mapped(path, np.dtype(_ST_DTYPES[e["dtype"]]), e["shape"], start + e["data_offsets"][0])
    if e["dtype"] == "BF16":  # bfloat16 = the high half of a float32
        return (np.asarray(arr, dtype=np.uint32) << 16).view(np.float32)
    if e["dtype"] == "F16":
        return np.asarray(arr, dtype=np.float32)
    return arr
