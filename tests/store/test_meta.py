"""Store header: scoring conventions, version checks, compatibility refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quantfid.corpus import first_scored
from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.store.meta import StoreMeta, check_compatible, tokens_hash


def meta(**kw: object) -> StoreMeta:
    base: dict[str, object] = {"kind": "full", "model_id": "m", "tokenizer_id": "tok-a",
                               "vocab_size": 100, "ctx": 512, "n_windows": 2}
    base.update(kw)
    return StoreMeta(**base)  # type: ignore[arg-type]


def test_scoring_conventions() -> None:
    assert first_scored(512, "llamacpp") == 256 and meta().n_scored == 255  # llama.cpp: 255 at 512
    assert meta(ctx=128).n_scored == 63
    assert meta(scoring="all").n_scored == 511
    with pytest.raises(QuantfidError, match="unknown scoring"):
        first_scored(512, "half")


def test_roundtrip_and_version(tmp_path: Path) -> None:
    m = meta(tokens_hash="abc", extra={"dtype": "float16"})
    m.save(tmp_path)
    assert StoreMeta.load(tmp_path) == m
    text = (tmp_path / "meta.json").read_text().replace('"format_version": 1', '"format_version": 99')
    (tmp_path / "meta.json").write_text(text)
    with pytest.raises(FormatError, match="format_version 99"):
        StoreMeta.load(tmp_path)
    with pytest.raises(FormatError, match="not a quantfid store"):
        StoreMeta.load(tmp_path / "nothing")


@pytest.mark.parametrize(("field", "value"), [("tokenizer_id", "tok-b"), ("vocab_size", 101),
                                              ("ctx", 256), ("scoring", "all")])
def test_mismatch_names_field_and_values(field: str, value: object) -> None:
    a = meta()
    with pytest.raises(MismatchError, match=f"{field}: store has .*, input has {value!r}"):
        check_compatible(a, meta(**{field: value}))
    with pytest.raises(MismatchError, match=field):
        check_compatible(a, **{field: value})  # type: ignore[arg-type]
    check_compatible(a, meta())  # identical: no error


def test_token_mismatch_names_position() -> None:
    toks = np.arange(2 * 512, dtype=np.int32).reshape(2, 512) % 100
    m = meta(tokens_hash=tokens_hash(toks))
    check_compatible(m, tokens=toks)
    check_compatible(m, tokens=toks.reshape(-1).astype(np.int64))  # flat and other int type
    other = toks.copy()
    other[1, 7] = 99  # was (512 + 7) % 100 = 19
    with pytest.raises(MismatchError, match=r"token ids.*\(1, 7\): 19 vs 99"):
        check_compatible(m, tokens=other, stored_tokens=toks)
