"""lm-eval-style (context, continuation) tokenization edge cases."""

from __future__ import annotations

import pytest

from quantfid.bench.encode import encode_pair, encode_prompt
from quantfid.bench.types import ChoicePrompt
from quantfid.errors import QuantfidError

from .helpers import GreedyTokenizer


def _ids(tok: GreedyTokenizer, s: str) -> list[int]:
    return tok(s)["input_ids"]


def test_plain_split(tok: GreedyTokenizer) -> None:
    ctx, cont = encode_pair(tok, "ab", " c")
    assert ctx == _ids(tok, "ab") and cont == _ids(tok, " c")


def test_trailing_space_moves_to_continuation(tok: GreedyTokenizer) -> None:
    # lm-eval: "ab " + "c" is scored as "ab" + " c" (the " c" piece, not " " then "c")
    ctx, cont = encode_pair(tok, "ab ", "c")
    assert ctx == _ids(tok, "ab")
    assert cont == [tok.vocab[" c"]]


def test_trailing_newline_and_spaces_move_too(tok: GreedyTokenizer) -> None:
    ctx, cont = encode_pair(tok, "e.\n ", "a")
    assert ctx == _ids(tok, "e.")
    whole = _ids(tok, "e.\n a")
    assert cont == whole[len(ctx):]


def test_continuation_is_whole_minus_context_tokens(tok: GreedyTokenizer) -> None:
    # "a" + "bc" tokenizes whole as the single piece "abc": the continuation is what is left
    # of the whole string's tokens after len(context tokens), as lm-eval does
    ctx, cont = encode_pair(tok, "a", "bc")
    assert ctx == [tok.vocab["a"]] and _ids(tok, "abc") == [tok.vocab["abc"]]
    assert cont == []
    with pytest.raises(QuantfidError, match="no tokens"):
        encode_prompt(tok, ChoicePrompt("x", "a", ("bc", " d"), 0))


def test_empty_context_uses_eos(tok: GreedyTokenizer) -> None:
    e = encode_prompt(tok, ChoicePrompt("x", "", ("ab", "c"), 1))
    assert e.context.tolist() == [tok.eos_token_id]
    assert [c.tolist() for c in e.continuations] == [_ids(tok, "ab"), _ids(tok, "c")]


def test_encoded_prompt_counts(tok: GreedyTokenizer) -> None:
    e = encode_prompt(tok, ChoicePrompt("x", "ab c", (" a", " bb", " j"), 1))
    assert e.gold_ids().tolist() == _ids(tok, "ab c") + _ids(tok, " bb")
    assert e.n_tokens == len(_ids(tok, "ab c")) + 1 + 2 + 2
