"""llama-cpp-python backend: optional; its tests skip (with the reason) when it is absent."""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
import pytest
import torch

from quantfid.backends import llamacpp
from quantfid.errors import QuantfidError


def test_missing_package_gives_build_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "llama_cpp":
            raise ImportError("No module named 'llama_cpp'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(QuantfidError, match="GGML_NATIVE=OFF"):
        llamacpp.LlamaCppBackend("x.gguf", n_ctx=64)


@pytest.mark.slow
@pytest.mark.skipif(not llamacpp.available(),
                    reason="llama-cpp-python is not installed (optional extra 'llamacpp')")
def test_llamacpp_matches_transformers_on_embedded_gguf() -> None:
    from quantfid import embedded
    from quantfid.backends.hf import HFBackend

    path = embedded.gguf_path()
    lc = llamacpp.LlamaCppBackend(path, n_ctx=64)
    hf = HFBackend.load(str(path))
    assert lc.vocab_size() == hf.vocab_size()
    assert lc.tokenizer_id() == hf.tokenizer_id()
    assert lc.bos_id() == hf.bos_id()
    text = "The quick brown fox jumps over the lazy dog. " * 8
    ids = hf.tokenize(text)[:64][None, :]
    assert np.array_equal(lc.tokenize(text)[:64], ids[0])
    p = next(hf.logprobs(ids, start=32, stop=63)).double()
    q = next(lc.logprobs(ids, start=32, stop=63)).double()
    kld = (p.exp() * (p - q)).sum(-1)
    # same Q4_1 weights; llama.cpp quantizes activations to 8 bits for its dot products
    assert float(kld.mean()) < 0.02
    assert torch.equal(p.argmax(-1), q.argmax(-1)) or float((p.argmax(-1) == q.argmax(-1)).double().mean()) > 0.9
