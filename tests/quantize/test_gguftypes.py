"""Per-tensor types read from a GGUF header: equal to gguf-py's full reader and to the
types the file was written with; HF <-> GGUF names invert each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from quantfid.errors import QuantfidError
from quantfid.quantize import get_recipe, quantize_model, write_gguf
from quantfid.quantize.gguftypes import gguf_tensor_types, gguf_types
from quantfid.quantize.names import gguf_name, hf_name

from .conftest import tiny_llama


def test_types_of_a_written_quant(tmp_path: Path) -> None:
    import gguf

    m = tiny_llama(seed=21)
    rep = quantize_model(m, get_recipe("Q4_K_M"), keep_data=True, progress=False)
    path = write_gguf(tmp_path / "q.gguf", m, rep)
    by_gguf = gguf_tensor_types(path)
    reader = gguf.GGUFReader(path)
    assert by_gguf == {t.name: t.tensor_type.name for t in reader.tensors}
    by_hf = gguf_types(path)
    assert {k: by_hf[k] for k in rep.types} == rep.types
    assert by_hf["model.norm.weight"] == "F32" and "lm_head.weight" not in by_hf  # tied
    assert len(set(rep.types.values())) >= 2


def test_names_invert_and_bad_files(tmp_path: Path) -> None:
    m = tiny_llama(seed=22, tied=False)
    for name, _ in m.named_parameters():
        g = gguf_name(name)
        assert g is not None and hf_name(g) == name
    assert hf_name("blk.0.unknown.weight") is None and hf_name("rope_freqs") is None
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 12)
    with pytest.raises(QuantfidError, match="not a readable GGUF"):
        gguf_tensor_types(bad)
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(QuantfidError, match="not a readable GGUF"):
        gguf_tensor_types(bad)
    with pytest.raises(QuantfidError, match="not found"):
        gguf_tensor_types(tmp_path / "missing.gguf")
