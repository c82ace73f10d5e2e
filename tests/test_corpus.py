"""Corpora and llama.cpp-style windows, checked against a plain loop over the token stream."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from quantfid import corpus as C
from quantfid.errors import FormatError, QuantfidError


def _llamacpp_reference(tokens: np.ndarray, n_ctx: int, bos: int | None):
    """perplexity.cpp, written out: chunk i covers tokens[i*n_ctx:(i+1)*n_ctx]; the logits at
    positions j = n_ctx/2 .. n_ctx-2 are scored against tokens[start + j + 1]."""
    first = n_ctx // 2
    ids, targets = [], []
    for i in range(len(tokens) // n_ctx):
        start = i * n_ctx
        chunk = list(tokens[start:start + n_ctx])
        if bos is not None:
            chunk[0] = bos
        ids.append(chunk)
        targets.append([tokens[start + j + 1] for j in range(first, n_ctx - 1)])
    return np.array(ids), np.array(targets)


@pytest.mark.parametrize("n_ctx", [8, 9, 16])
@pytest.mark.parametrize("bos", [None, 999])
def test_llamacpp_windows_match_loop(n_ctx: int, bos: int | None) -> None:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 500, size=5 * n_ctx + 3)
    w = C.make_windows(tokens, n_ctx, bos, scoring="llamacpp")
    ids, targets = _llamacpp_reference(tokens, n_ctx, bos)
    assert np.array_equal(w.ids, ids)
    assert np.array_equal(w.targets, targets)
    assert len(w) == 5 and w.first == n_ctx // 2
    assert w.n_score == targets.shape[1] == n_ctx - 1 - n_ctx // 2


def test_scored_counts_match_llamacpp() -> None:
    for n_ctx, expected in ((512, 255), (2048, 1023)):
        w = C.make_windows(np.arange(2 * n_ctx), n_ctx, 1)
        assert w.n_score == expected and w.targets.shape == (2, expected)


def test_all_scoring_scores_every_token_after_the_first() -> None:
    tokens = np.arange(40)
    w = C.make_windows(tokens, 10, 7, scoring="all")
    assert w.first == 0 and w.n_score == 9
    for i in range(4):
        assert list(w.targets[i]) == list(range(i * 10 + 1, i * 10 + 10))
        assert w.ids[i, 0] == 7 and list(w.ids[i, 1:]) == list(range(i * 10 + 1, i * 10 + 10))


def test_max_chunks_and_errors() -> None:
    tokens = np.arange(100)
    assert len(C.make_windows(tokens, 10, None, max_chunks=3)) == 3
    assert len(C.make_windows(tokens, 10, None, max_chunks=50)) == 10
    with pytest.raises(QuantfidError, match="fewer than one window"):
        C.make_windows(tokens, 128, None)
    with pytest.raises(QuantfidError, match="unknown scoring"):
        C.make_windows(tokens, 10, None, scoring="half")
    with pytest.raises(QuantfidError, match="at least 1"):
        C.make_windows(tokens, 10, None, max_chunks=0)


def test_window_hash_tracks_inputs() -> None:
    tokens = np.arange(100)
    a = C.make_windows(tokens, 10, None)
    assert a.hash == C.make_windows(tokens.copy(), 10, None).hash
    assert a.hash != C.make_windows(tokens, 10, 5).hash
    assert a.hash != C.make_windows(tokens, 10, None, scoring="all").hash
    t2 = tokens.copy()
    t2[57] = 0
    assert a.hash != C.make_windows(t2, 10, None).hash


@pytest.mark.parametrize("name", C.builtin_names())
def test_builtin_corpora_are_deterministic_and_hashed(name: str) -> None:
    c = C.builtin(name)
    assert c.hash == hashlib.sha256(c.text.encode("utf-8")).hexdigest()
    C.builtin.cache_clear()
    again = C.builtin(name)
    assert again.hash == c.hash and again is not c
    assert "PSF" in c.licence and c.source
    # long enough for several 2048-token windows even at ~5 characters per token
    assert len(c.text) >= 8 * 2048 * 5
    info = c.to_json()
    assert info["hash"] == c.hash and "text" not in info


def test_builtin_kinds_differ_in_kind() -> None:
    prose, code, docs = C.builtin("prose"), C.builtin("code"), C.builtin("docs")
    assert ">>>" not in prose.text and "def " not in prose.text
    letters = sum(ch.isalpha() or ch.isspace() for ch in prose.text) / len(prose.text)
    assert letters > 0.9
    assert code.text.startswith("# file: abc.py\n") and code.text.count("\ndef ") > 100
    assert "statement" in docs.text and docs.extra["topics"] > 50
    assert len({prose.hash, code.hash, docs.hash}) == 3


def test_user_text_file_and_builtin_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "my.txt"
    f.write_text("hello there\n")
    c = C.load_corpus(str(f))
    assert c.name == "my" and c.text == "hello there\n"
    assert c.hash == hashlib.sha256(b"hello there\n").hexdigest()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "code").write_text("local file")
    assert C.load_corpus("code").name == "code" and C.load_corpus("code").text != "local file"
    assert C.load_corpus("./code").text == "local file"


def test_user_directory_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.txt").write_text("B")
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub" / "c.txt").write_text("C")
    (tmp_path / "d" / ".hidden").write_text("H")
    c = C.load_corpus(str(tmp_path / "d"))
    assert c.text == "A\n\nB\n\nC" and c.extra["files"] == 3


def test_user_jsonl_field(tmp_path: Path) -> None:
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [{"text": "one", "x": 1}, {"text": "two"}]) + "\n")
    c = C.load_corpus(f"{p}:text")
    assert c.text == "one\n\ntwo" and c.name == "data:text"
    with pytest.raises(FormatError, match=r"data.jsonl:1: no field 'body'"):
        C.load_corpus(f"{p}:body")
    p.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(FormatError, match=r"data.jsonl:2: invalid JSON"):
        C.load_corpus(f"{p}:text")
    p.write_text('{"text": 3}\n')
    with pytest.raises(FormatError, match="not a string"):
        C.load_corpus(f"{p}:text")


def test_bad_user_corpora(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff\xfe")
    with pytest.raises(FormatError, match="not UTF-8"):
        C.load_corpus(str(bad))
    with pytest.raises(QuantfidError, match="neither a built-in"):
        C.load_corpus(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(FormatError, match="empty"):
        C.load_corpus(str(tmp_path / "empty.txt"))


def test_tokenize_prepends_bos_only_when_asked() -> None:
    class Tok:
        def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
            assert add_special_tokens is False
            return {"input_ids": [ord(ch) for ch in text]}

    assert list(C.tokenize("ab", Tok())) == [97, 98]
    assert list(C.tokenize("ab", Tok(), bos_id=1)) == [1, 97, 98]
    assert C.tokenize("ab", Tok()).dtype == np.int64
