"""Fuzz the binary readers: llama.cpp kld-base files, GGUF headers (``check_gguf``),
``.npy`` and ``.safetensors`` arrays (the ``stats`` command's loaders).

Mutations include extreme values written over the length and count fields, so each test
also bounds the memory the reader allocates (tracemalloc, which numpy reports to) by a
small multiple of the file's size: a length field must be checked against the file before
it sizes a buffer.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from tests.fuzz.mutate import expect, mutated_bytes

from quantfid.arrayfile import load_npy, load_safetensors
from quantfid.errors import QuantfidError
from quantfid.gguf_check import check_gguf
from quantfid.store.llamacpp import KldBase, write_kld_base

SLACK = 1 << 20  # bytes any reader may allocate regardless of the file (headers, objects)


@contextlib.contextmanager
def allocation_bound(limit: int) -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= limit, f"allocated {peak} bytes, the file allows {limit}"


def _bounded(fn: Callable[[], Any], size: int, factor: int = 4) -> Any:
    with allocation_bound(factor * size + SLACK):
        return expect(fn, QuantfidError)


def _u64_fields(data: bytes, end: int) -> list[tuple[int, int]]:
    """Offsets in ``data[:end]`` holding a small little-endian uint64 (lengths, counts)."""
    out = []
    for off in range(0, min(end, len(data)) - 8):
        (v,) = struct.unpack_from("<Q", data, off)
        if 0 < v < 100_000:
            out.append((off, 8))
    return out


# ---- kld-base ----------------------------------------------------------------------------------
def _kld_base_bytes() -> bytes:
    rng = np.random.default_rng(0)
    n_ctx, n_vocab, n_chunk = 8, 11, 2
    tokens = rng.integers(0, n_vocab, (n_chunk, n_ctx))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "base.bin"
        n_scored = n_ctx - 1 - n_ctx // 2
        write_kld_base(p, tokens, n_vocab,
                       [rng.normal(0, 3, (n_scored, n_vocab)).astype(np.float32)
                        for _ in range(n_chunk)])
        return p.read_bytes()


KLD = _kld_base_bytes()
_ROW0 = 20 + 4 * 8 * 2  # first row header (scale, min_log_prob)
KLD_FIELDS = [(8, 4), (12, 4), (16, 4), (_ROW0, 4), (_ROW0 + 2, 2), (_ROW0 + 4, 4),
              (_ROW0 + 24, 4), (20, 4), (24, 4)]


@given(mutated_bytes(KLD, fields=KLD_FIELDS))
def test_kld_base(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    p = _file(tmp_path_factory, "base.bin", data)

    def read() -> KldBase:
        kb = KldBase(p)
        for c in range(kb.n_chunk):
            lp, t, nb = kb.logp(c), kb.targets(c), kb.nll_base(c)
            assert lp.shape == (kb.n_scored, kb.n_vocab) and t.shape == (kb.n_scored,)
            assert np.isfinite(lp).all() and (lp <= 1e-3).all()
            assert ((t >= 0) & (t < kb.n_vocab)).all()
            assert np.isfinite(nb).all() and (nb >= -1e-3).all()
        if kb.n_chunk:
            ppl, unc = kb.ppl_base()
            assert np.isfinite(ppl) and ppl > 0 and unc >= 0
        return kb

    _bounded(read, len(data))


# ---- GGUF --------------------------------------------------------------------------------------
def _gguf_bytes() -> bytes:
    import gguf

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "tiny.gguf"
        w = gguf.GGUFWriter(str(p), "llama")
        w.add_uint32("general.alignment", 32)
        w.add_string("general.name", "tiny")
        w.add_float32("llama.rope.freq_base", 10000.0)
        w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "bb", "ccc"])
        w.add_array("tokenizer.ggml.scores", [0.0, -1.0, -2.0, -3.0])
        w.add_bool("tokenizer.ggml.add_bos_token", True)
        w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
        w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return p.read_bytes()


GGUF = _gguf_bytes()
GGUF_FIELDS = [(4, 4), (8, 8), (16, 8), *_u64_fields(GGUF, len(GGUF) - 160)]


@given(mutated_bytes(GGUF, fields=GGUF_FIELDS))
def test_gguf_header(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    p = _file(tmp_path_factory, "tiny.gguf", data)
    ok = _bounded(lambda: check_gguf(p) or True, len(data))
    if ok:  # what check_gguf passes, llama.cpp's own Python reader reads
        import gguf

        r = gguf.GGUFReader(p)
        for t in r.tensors:
            assert t.data.nbytes == t.n_bytes


# ---- .npy / .safetensors -------------------------------------------------------------------------
def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


NPYS = [_npy_bytes(np.linspace(-3, 3, 24, dtype=np.float32).reshape(4, 6)),
        _npy_bytes(np.arange(5, dtype=np.int64)),
        _npy_bytes(np.asfortranarray(np.ones((3, 2), dtype=np.float16)))]


def _npy_check(arr: np.ndarray, size: int) -> None:
    assert arr.dtype.kind in "biuf"
    assert arr.nbytes <= size
    np.asarray(arr).sum()  # the whole map is readable


@pytest.mark.parametrize("k", range(len(NPYS)))
def test_npy(k: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    @given(mutated_bytes(NPYS[k], fields=[(8, 2), (6, 1)], text=True))
    def run(data: bytes) -> None:
        p = _file(tmp_path_factory, f"a{k}.npy", data)
        arr = _bounded(lambda: load_npy(p), len(data))
        if arr is not None:
            _npy_check(arr, len(data))

    run()


def _st_bytes(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    data, off = b"", 0
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        data += raw
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


_LOGITS = np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)
SAFETENSORS = [
    _st_bytes({"logits": ("F32", [3, 4], _LOGITS.tobytes())}),
    _st_bytes({"logits": ("BF16", [3, 4], (_LOGITS.view(np.uint32) >> 16).astype("<u2").tobytes()),
               "targets": ("I64", [3], np.array([0, 3, 1], "<i8").tobytes())}),
    _st_bytes({"logprobs": ("F16", [3, 4], _LOGITS.astype("<f2").tobytes())}),
]


@pytest.mark.parametrize("k", range(len(SAFETENSORS)))
def test_safetensors(k: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    @given(mutated_bytes(SAFETENSORS[k], fields=[(0, 8)], text=True))
    def run(data: bytes) -> None:
        p = _file(tmp_path_factory, f"a{k}.safetensors", data)
        arr = _bounded(lambda: load_safetensors(p, ("logits", "logprobs")), len(data))
        if arr is not None:
            assert arr.dtype.kind in "biuf"
            assert arr.nbytes <= 2 * len(data)  # float16 / bfloat16 widened to float32
            np.asarray(arr).sum()

    run()


_DIRS: dict[int, Path] = {}


def _file(factory: pytest.TempPathFactory, name: str, data: bytes) -> Path:
    d = _DIRS.setdefault(id(factory), factory.mktemp("fuzz-binary"))
    p = d / name
    p.write_bytes(data)
    return p
