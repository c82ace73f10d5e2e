"""llama.cpp through llama-cpp-python (optional): teacher-forced log-probs of a GGUF.

A GGUF quant is then measured by the engine that will serve it. Install the extra with
``pip install 'quantfid[llamacpp]'``; it builds llama.cpp from source (several minutes).
A default ``-march=native`` build segfaulted on this project's CPU in ggml's AMX path,
so build it portable::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \\
        pip install --no-binary llama-cpp-python llama-cpp-python

Each window is evaluated from an empty KV cache with ``logits_all=True`` (every position
gets logits, as ``llama-perplexity`` computes them) and flash attention on (as
``llama-perplexity`` runs on the CPU); log-softmax is taken in float32 on our side.
Checked: a Q4_0 GGUF of the embedded model against a ``llama-perplexity`` kld-base file of
the Q4_1 reference (n_ctx 128, 2 chunks) gives llama-perplexity's own statistics (mean KLD
0.251813, both). ``llama_cpp`` is imported only when a backend is created.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantfid.errors import QuantfidError
from quantfid.hashing import hash_file, hash_json
from quantfid.records import Model, Role

BUILD_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF '
              '-DGGML_AMX_BF16=OFF" pip install llama-cpp-python')


def available() -> bool:
    """True when llama-cpp-python can be imported."""
    return importlib.util.find_spec("llama_cpp") is not None


def _import() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise QuantfidError(f"--backend llamacpp needs llama-cpp-python ({e}); install it "
                            f"with the portable build flags: {BUILD_HINT}") from e
    return llama_cpp


class LlamaCppBackend:
    """Teacher-forced log-probs from a GGUF run by llama.cpp (the ``Backend`` protocol)."""

    def __init__(self, path: str | Path, n_ctx: int, role: Role = "quant",
                 name: str | None = None, threads: int | None = None,
                 **llama_kwargs: Any) -> None:
        llama_cpp = _import()
        p = Path(path)
        if not p.is_file():
            raise QuantfidError(f"GGUF file not found: {p}")
        self.n_ctx = n_ctx
        # llama-perplexity runs with flash attention (its "auto" turns it on for the CPU);
        # without it the attention sums round differently (~1 % off in mean KLD for Q4_0)
        llama_kwargs.setdefault("flash_attn", True)
        self.llm = llama_cpp.Llama(model_path=str(p), n_ctx=n_ctx, n_batch=n_ctx,
                                   n_ubatch=n_ctx, logits_all=True, verbose=False,
                                   n_threads=threads or os.cpu_count() or 1, **llama_kwargs)
        self.info = Model(id=name or p.stem, role=role, source=str(p), format="gguf",
                          hash=hash_file(p), extra={"backend": "llamacpp"})
        self._tok_id: str | None = None

    def vocab_size(self) -> int:
        return int(self.llm.n_vocab())

    def _token_texts(self) -> list[str]:
        return [self.llm._model.token_get_text(i) for i in range(self.vocab_size())]

    def tokenizer_id(self) -> str:
        """sha256 of the vocabulary strings in id order plus BOS/EOS ids. The strings are the
        GGUF's, which for GPT-2-style BPE equal the transformers vocabulary."""
        if self._tok_id is None:
            self._tok_id = hash_json({"vocab": self._token_texts(),
                                      "bos": int(self.llm.token_bos()),
                                      "eos": int(self.llm.token_eos())})
        return self._tok_id

    def bos_id(self) -> int | None:
        """BOS when the GGUF sets ``add_bos`` (as llama-perplexity decides), else None."""
        add = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false")
        return int(self.llm.token_bos()) if str(add).lower() == "true" else None

    def tokenize(self, text: str, bos: bool | None = None) -> np.ndarray:
        use_bos = self.bos_id() is not None if bos is None else bos
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
        if use_bos:
            ids = [int(self.llm.token_bos()), *ids]
        return np.asarray(ids, dtype=np.int64)

    def logprobs(self, windows: np.ndarray, batch_size: int = 1, start: int = 0,
                 stop: int | None = None) -> Iterator[torch.Tensor]:
        """Yield float32 log-probs (1, stop - start, V) per window (llama.cpp evaluates one
        sequence at a time here; ``batch_size`` is accepted for the protocol)."""
        ids = np.asarray(windows, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] > self.n_ctx:
            raise QuantfidError(f"windows must be (n, <= {self.n_ctx}), got {ids.shape}")
        stop = ids.shape[1] if stop is None else stop
        for row in ids:
            self.llm.reset()
            self.llm.eval([int(t) for t in row])
            logits = np.array(self.llm.scores[start:stop], dtype=np.float32, copy=True)
            yield torch.log_softmax(torch.from_numpy(logits), dim=-1).unsqueeze(0)
