"""A cheap structural check of a GGUF file before anything loads it.

``check_gguf(path)`` walks the header, the metadata key/values and the tensor infos of a
GGUF (versions 2 and 3, little-endian, as llama.cpp writes them) through a read-only
memory map, without reading tensor data, and raises :class:`~quantfid.errors.FormatError`
naming the file and what is wrong: bad magic or version, counts that the file is too small
to hold, a string or array whose length runs past the end of the file, an unknown value or
tensor type, a nested array, duplicate keys or tensor names, a bad ``general.alignment``,
more than 4 dimensions, a row length that is not a multiple of the type's block, or tensor
data outside the file. Every length field is checked against the bytes that remain before
it is used, so a corrupt file never sizes an allocation.

Layout (GGUF spec): ``"GGUF"``, uint32 version, uint64 tensor count, uint64 key/value
count; each key/value: string key, uint32 type, value (a string is uint64 length + bytes;
an array is uint32 element type + uint64 count + elements); each tensor info: string name,
uint32 n_dims, n_dims x uint64 ne, uint32 ggml type, uint64 offset into the data section,
which starts at the first multiple of ``general.alignment`` (default 32) after the infos.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from quantfid.errors import FormatError

MAGIC = b"GGUF"
VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4           # GGML_MAX_DIMS
MAX_NAME = 63          # GGML_MAX_NAME - 1 (names are NUL-terminated in ggml)
_STRING, _ARRAY = 8, 9
# value type -> struct format of a scalar
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_MIN_KV = 8 + 1 + 4 + 1       # key length, a 1-byte key, type, a 1-byte value
_MIN_TENSOR = 8 + 1 + 4 + 4 + 8  # name length, a 1-byte name, n_dims, type, offset


class _Reader:
    """Bounded little-endian reads from a memory map; positions are file offsets."""

    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf, self.path, self.pos, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> FormatError:
        return FormatError(f"{self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(f"truncated or corrupt GGUF: {what} needs {n} bytes at offset "
                            f"{self.pos}, only {self.size - self.pos} remain")

    def scalar(self, fmt: str, what: str) -> int | float | bool:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def skip_string(self, what: str) -> None:
        n = self.u64(f"{what} length")
        self.need(n, f"{what} ({n} bytes)")
        self.pos += n

    def string(self, what: str) -> str:
        n = self.u64(f"{what} length")
        self.need(n, f"{what} ({n} bytes)")
        raw = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} at offset {self.pos - n} is not UTF-8") from None


def _value(r: _Reader, vtype: int, key: str, in_array: bool = False) -> int | float | bool | None:
    """Read (or skip) one value of ``vtype``; returns scalars, None for strings/arrays."""
    if vtype in _SCALARS:
        return r.scalar(_SCALARS[vtype], f"value of {key!r}")
    if vtype == _STRING:
        r.skip_string(f"string value of {key!r}")
        return None
    if vtype == _ARRAY and not in_array:
        etype = r.u32(f"array type of {key!r}")
        count = r.u64(f"array length of {key!r}")
        if etype in _SCALARS:
            width = struct.calcsize(_SCALARS[etype])
            r.need(count * width, f"array {key!r} of {count} values")
            r.pos += count * width
        elif etype == _STRING:
            r.need(count * 8, f"array {key!r} of {count} strings")
            for i in range(count):
                r.skip_string(f"string {i} of array {key!r}")
        else:
            what = "nested arrays are" if etype == _ARRAY else f"element type {etype} is"
            raise r.fail(f"metadata {key!r}: {what} not valid GGUF")
        return None
    raise r.fail(f"metadata {key!r}: unknown value type {vtype}")


def _header(r: _Reader) -> tuple[int, int]:
    if r.size < 24 or bytes(r.buf[:4]) != MAGIC:
        head = bytes(r.buf[:4])
        raise r.fail(f"not a GGUF file (magic {head!r}, expected {MAGIC!r}; {r.size} bytes)"
                     if head != MAGIC else f"truncated GGUF header ({r.size} bytes)")
    r.pos = 4
    version = r.u32("version")
    if version not in VERSIONS:
        swapped = int.from_bytes(version.to_bytes(4, "little"), "big")
        why = ("a big-endian GGUF, which is not supported" if swapped in VERSIONS
               else "GGUF v1 is no longer supported; re-convert it" if version == 1
               else f"supported: {', '.join(map(str, VERSIONS))}")
        raise r.fail(f"GGUF version {version} ({why})")
    n_tensors = r.u64("tensor count")
    n_kv = r.u64("metadata count")
    if n_tensors * _MIN_TENSOR + n_kv * _MIN_KV > r.size - r.pos:
        raise r.fail(f"truncated or corrupt GGUF: {n_tensors} tensors and {n_kv} metadata "
                     f"entries cannot fit in {r.size} bytes")
    return n_tensors, n_kv


def _metadata(r: _Reader, n_kv: int) -> int:
    """Walk the key/values; returns the alignment."""
    seen: set[str] = set()
    alignment = DEFAULT_ALIGNMENT
    for i in range(n_kv):
        key = r.string(f"metadata key {i}")
        if key in seen:
            raise r.fail(f"metadata key {key!r} appears twice")
        seen.add(key)
        vtype = r.u32(f"value type of {key!r}")
        v = _value(r, vtype, key)
        if key == "general.alignment":
            if vtype != 4 or not isinstance(v, int) or v <= 0 or v & (v - 1):
                raise r.fail(f"general.alignment must be a uint32 power of two, got {v!r} "
                             f"(type {vtype})")
            alignment = v
    return alignment


def _tensor_infos(r: _Reader, n_tensors: int) -> list[tuple[str, int, int, int]]:
    """(name, ggml type, offset, byte size) per tensor."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    sizes = {int(t): bs for t, bs in GGML_QUANT_SIZES.items()}
    names: set[str] = set()
    out = []
    for i in range(n_tensors):
        name = r.string(f"tensor {i} name")
        if len(name.encode()) > MAX_NAME:
            raise r.fail(f"tensor name {name[:40]!r}... is longer than {MAX_NAME} bytes")
        if name in names:
            raise r.fail(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = r.u32(f"dimension count of tensor {name!r}")
        if n_dims > MAX_DIMS:
            raise r.fail(f"tensor {name!r} has {n_dims} dimensions (at most {MAX_DIMS})")
        ne = [r.u64(f"dimension {d} of tensor {name!r}") for d in range(n_dims)]
        gtype = r.u32(f"type of tensor {name!r}")
        offset = r.u64(f"data offset of tensor {name!r}")
        if gtype not in sizes:
            known = "unknown" if gtype not in {int(t) for t in GGMLQuantizationType} else "unsized"
            raise r.fail(f"tensor {name!r} has {known} ggml type {gtype}")
        block, type_size = sizes[gtype]
        if ne and ne[0] % block:
            raise r.fail(f"tensor {name!r}: row length {ne[0]} is not a multiple of its "
                         f"type's block ({block})")
        n = 1
        for d in ne:
            n *= d
            if n * type_size > r.size * block:  # Python ints: checked before it can matter
                raise r.fail(f"truncated or corrupt GGUF: tensor {name!r} of shape {ne} "
                             f"needs more bytes than the whole file ({r.size})")
        out.append((name, gtype, offset, n // block * type_size))
    return out


def check_gguf(path: str | os.PathLike[str]) -> None:
    """Raise FormatError unless ``path`` is a structurally sound GGUF (see module doc)."""
    p = Path(path)
    if not p.is_file():
        raise FormatError(f"{p}: no such GGUF file" + (" (a directory)" if p.is_dir() else ""))
    with open(p, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            _header(_Reader(fh.read(24), p))
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            r = _Reader(mm, p)
            n_tensors, n_kv = _header(r)
            alignment = _metadata(r, n_kv)
            infos = _tensor_infos(r, n_tensors)
            start = -(-r.pos // alignment) * alignment
            data = size - start
            if infos and data < 0:
                raise r.fail(f"truncated GGUF: the tensor data section (offset {start}) "
                             f"is past the end of the file ({size} bytes)")
            for name, _, offset, nbytes in infos:
                if offset % alignment:
                    raise r.fail(f"tensor {name!r}: data offset {offset} is not a multiple "
                                 f"of the alignment {alignment}")
                if offset + nbytes > data:
                    raise r.fail(f"truncated GGUF: tensor {name!r} needs bytes "
                                 f"{start + offset}..{start + offset + nbytes} of a "
                                 f"{size}-byte file")
