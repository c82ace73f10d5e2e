"""A tokenizer held on this side of a server: the reference's, named by option ``tokenizer``.

Servers do not expose their vocabulary, so quantfid cannot hash it (the tokenizer id every
backend reports is a hash of the vocabulary strings and BOS/EOS, see
:func:`quantfid.backends.hf.tokenizer_id`). With option ``tokenizer`` (a GGUF file,
``embedded``, a model directory or a hub id) the backend reports that tokenizer's id after
checking that the server tokenizes a probe text to the same ids. llama-cpp-python's server
also needs it to turn the windows into text and its text-keyed log-probs back into ids, so
for that dialect it must be a GGUF (the pieces are rendered as the server renders them).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quantfid.errors import QuantfidError
from quantfid.hashing import hash_json


class LocalVocab:
    """Tokenizer of a GGUF (llama.cpp, vocab only) or of a transformers model."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._gguf: Any = None
        self._hf: Any = None
        path = _gguf_path(source)
        if path is not None:
            import llama_cpp

            self._gguf = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        else:
            from transformers import AutoTokenizer

            try:
                self._hf = AutoTokenizer.from_pretrained(source)
            except (OSError, ValueError) as e:
                raise QuantfidError(f"option tokenizer={source!r}: cannot load a tokenizer "
                                    f"from it ({e})") from e
        self._pieces: list[str] | None = None

    @property
    def is_gguf(self) -> bool:
        return self._gguf is not None

    def vocab_size(self) -> int:
        return int(self._gguf.n_vocab()) if self._gguf is not None else len(self._hf)

    def tokenizer_id(self) -> str:
        if self._hf is not None:
            from quantfid.backends.hf import tokenizer_id

            return tokenizer_id(self._hf)
        m = self._gguf
        return hash_json({"vocab": [m._model.token_get_text(i) for i in range(m.n_vocab())],
                          "bos": int(m.token_bos()), "eos": int(m.token_eos())})

    def bos(self) -> int | None:
        t = self._gguf.token_bos() if self._gguf is not None else self._hf.bos_token_id
        return None if t is None or int(t) < 0 else int(t)

    def eos(self) -> int | None:
        t = self._gguf.token_eos() if self._gguf is not None else self._hf.eos_token_id
        return None if t is None or int(t) < 0 else int(t)

    def adds_bos(self) -> bool:
        if self._gguf is not None:
            add = self._gguf.metadata.get("tokenizer.ggml.add_bos_token", "false")
            return str(add).lower() == "true"
        from quantfid.backends.hf import adds_bos

        return bool(adds_bos(self._hf))

    def tokenize(self, text: str) -> list[int]:
        """Ids of ``text`` without BOS, special-token text parsed as special tokens (as the
        servers do)."""
        if self._gguf is not None:
            return list(self._gguf.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        return list(self._hf(text, add_special_tokens=False)["input_ids"])

    def detokenize(self, ids: Sequence[int]) -> bytes:
        """UTF-8 bytes of ``ids`` with special tokens rendered as their text."""
        if self._gguf is not None:
            return bytes(self._gguf._model.detokenize([int(i) for i in ids], special=True))
        return str(self._hf.decode([int(i) for i in ids])).encode("utf-8")

    def pieces(self) -> list[str]:
        """Each id's text as llama-cpp-python's server keys ``top_logprobs``: the piece
        without special tokens, decoded as UTF-8 with invalid bytes dropped."""
        if self._gguf is None:
            raise QuantfidError("llama-cpp-python's server keys log-probs by token text; give "
                                "option tokenizer=<the model's GGUF file> to map them to ids")
        if self._pieces is None:
            model = self._gguf._model
            self._pieces = [model.detokenize([i], special=False).decode("utf-8", "ignore")
                            for i in range(self.vocab_size())]
        return self._pieces

    def piece_ids(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        """text -> id for texts that name one id, and text -> ids for texts several share."""
        by_text: dict[str, list[int]] = collections.defaultdict(list)
        for i, p in enumerate(self.pieces()):
            by_text[p].append(i)
        unique = {p: ids[0] for p, ids in by_text.items() if len(ids) == 1}
        return unique, {p: ids for p, ids in by_text.items() if len(ids) > 1}


def _gguf_path(source: str) -> Path | None:
    if source in ("", "embedded"):
        from quantfid import embedded

        return embedded.gguf_path()
    p = Path(source)
    if p.suffix.lower() == ".gguf":
        if not p.is_file():
            raise QuantfidError(f"option tokenizer: GGUF file not found: {source}")
        return p
    return None
