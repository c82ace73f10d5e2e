"""llama.cpp through llama-cpp-python: a GGUF measured by the engine that serves it.

Registry name ``llamacpp`` (:func:`open_llamacpp`); capabilities ``score``, ``loglikelihood``
and ``generate``; identity ``Identity("llamacpp", "native", "cpu", "native")``.

Scoring reproduces ``llama-perplexity``: each window is evaluated from an empty KV cache in
one batch with logits for every position (``logits_all``), flash attention on (as
llama-perplexity runs on the CPU; without it Q and the attention weights are rounded to f16
and the mean KLD comes out ~1 % lower) and the KV cache in f16; the logits go to the reducer
as float32 and are normalised on our side. Checked: a Q4_0 GGUF of the embedded model
against a ``llama-perplexity`` kld-base file of the Q4_1 reference (n_ctx 128, 2 chunks)
gives llama-perplexity's own statistics (mean KLD 0.251813, both).

Log-likelihood evaluates each prompt's context once, then each continuation from the cached
prefix: ``n_tokens`` is rolled back to the context length, and the next ``eval`` drops the
KV cells past it (``llama_memory_seq_rm``) before it decodes the continuation. A
continuation's log-likelihood is the float64 sum of float32 log-softmax values (lm-eval).
Small continuation batches take ggml's single-row kernels (f16 Q and accumulators in
attention), so they can differ from one full evaluation of the same tokens by rounding
(~1e-4 nats per token on the embedded model; tested).

Generation is greedy (first argmax of the float32 logits) from the prompt's tokens (special
tokens in the text parsed, BOS when the GGUF adds one), stopping at an end-of-generation
token, after ``max_tokens`` or before the first stop sequence.

Install with the portable build flags (a default ``-march=native`` build segfaulted in ggml's
AMX path on this project's CPU)::

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \\
        pip install llama-cpp-python

``llama_cpp`` is imported only when a backend is created.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from quantfid.backends.base import Identity, LoglikRequest, LoglikResult, Reducer
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_file, hash_json
from quantfid.records import Model, Role

if TYPE_CHECKING:
    from quantfid.models import ModelSpec

R = TypeVar("R")

BUILD_HINT = ('CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF '
              '-DGGML_AMX_BF16=OFF" pip install llama-cpp-python')
#: positions handed to a reducer at once
CHUNK = 256
DEFAULT_N_CTX = 2048


def available() -> bool:
    """True when llama-cpp-python can be imported."""
    return importlib.util.find_spec("llama_cpp") is not None


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, quiet, or a QuantfidError with the build hint.

    Quiet: llama-cpp-python maps ggml's log levels by their old numbers, so llama.cpp's
    warnings (the quantizer's fallback notes) arrive as errors; its logger is set above
    error. Failures still surface: every call here checks its return code."""
    try:
        import llama_cpp
        from llama_cpp import _logger
    except ImportError as e:
        raise QuantfidError(f"--backend llamacpp needs llama-cpp-python ({e}); install it "
                            f"with the portable build flags: {BUILD_HINT}") from e
    _logger.logger.setLevel(logging.CRITICAL)
    return llama_cpp


class LlamaCppBackend:
    """A GGUF run by llama.cpp in-process (the ``Backend`` protocol; see the module docstring).

    n_ctx: the longest token sequence any call evaluates (the logits buffer is n_ctx x V
    float32). threads: default every CPU.
    """

    name = "llamacpp"
    capabilities = frozenset({"score", "loglikelihood", "generate"})

    def __init__(self, path: str | Path, n_ctx: int, role: Role = "quant",
                 name: str | None = None, threads: int | None = None,
                 **llama_kwargs: Any) -> None:
        self._lc = import_llama_cpp()
        p = Path(path)
        if not p.is_file():
            raise QuantfidError(f"GGUF file not found: {p}")
        if n_ctx < 2:
            raise QuantfidError(f"n_ctx must be at least 2, got {n_ctx}")
        self.n_ctx = int(n_ctx)
        llama_kwargs.setdefault("flash_attn", True)
        self.llm = self._lc.Llama(model_path=str(p), n_ctx=self.n_ctx, n_batch=self.n_ctx,
                                  n_ubatch=self.n_ctx, logits_all=True, verbose=False,
                                  n_threads=threads or os.cpu_count() or 1, **llama_kwargs)
        import_llama_cpp()                    # Llama() turned llama.cpp's warnings back on
        self.info = Model(id=name or p.stem, role=role, source=str(p), format="gguf",
                          hash=hash_file(p), extra={"backend": "llamacpp"})
        self._tok_id: str | None = None

    # ---- identity and tokens ----------------------------------------------------------------
    def identity(self) -> Identity:
        return Identity("llamacpp", "native", "cpu", "native")

    def vocab_size(self) -> int:
        return int(self.llm.n_vocab())

    def tokenizer_id(self) -> str:
        """sha256 of the vocabulary strings in id order plus BOS/EOS ids. The strings are the
        GGUF's, which for GPT-2-style BPE equal the transformers vocabulary."""
        if self._tok_id is None:
            texts = [self.llm._model.token_get_text(i) for i in range(self.vocab_size())]
            self._tok_id = hash_json({"vocab": texts, "bos": int(self.llm.token_bos()),
                                      "eos": int(self.llm.token_eos())})
        return self._tok_id

    def bos_id(self) -> int | None:
        """BOS when the GGUF sets ``add_bos`` (as llama-perplexity decides), else None."""
        add = self.llm.metadata.get("tokenizer.ggml.add_bos_token", "false")
        return int(self.llm.token_bos()) if str(add).lower() == "true" else None

    def eos_id(self) -> int | None:
        eos = int(self.llm.token_eos())
        return eos if eos >= 0 else None

    def tokenize(self, text: str, bos: bool | None = None, *, special: bool = False) -> np.ndarray:
        """int64 ids of ``text``; BOS prepended when the model adds one (``bos`` overrides).
        special: parse special-token text (``<|im_start|>``) as those tokens."""
        use_bos = self.bos_id() is not None if bos is None else bos
        ids = self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)
        if use_bos:
            ids = [int(self.llm.token_bos()), *ids]
        return np.asarray(ids, dtype=np.int64)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (special tokens rendered empty; an incomplete UTF-8 tail dropped)."""
        raw = self.llm.detokenize([int(t) for t in ids], special=False)
        return bytes(raw).decode("utf-8", errors="ignore")

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None

    # ---- evaluation -------------------------------------------------------------------------
    def _eval(self, ids: Sequence[int] | np.ndarray, n_past: int = 0) -> None:
        """Evaluate ``ids`` after the first ``n_past`` cached tokens (0: from an empty cache);
        their logits land in ``llm.scores[n_past : n_past + len(ids)]``."""
        if n_past + len(ids) > self.n_ctx:
            raise QuantfidError(f"a sequence of {n_past + len(ids)} tokens does not fit the "
                                f"llama.cpp context of {self.n_ctx} (raise the n_ctx option)")
        if n_past == 0:
            self.llm.reset()
        else:
            self.llm.n_tokens = n_past
        self.llm.eval([int(t) for t in ids])

    def _logits(self, lo: int, hi: int) -> torch.Tensor:
        """float32 logits (hi - lo, V) of evaluated positions lo .. hi - 1 (a view, valid
        until the next evaluation)."""
        return torch.from_numpy(self.llm.scores[lo:hi])

    def _reduce(self, reducer: Reducer[R], window: int, start: int, stop: int) -> Iterator[R]:
        for lo in range(start, stop, CHUNK):
            yield reducer.full(window, lo, self._logits(lo, min(stop, lo + CHUNK)))

    def score_windows(self, ids: np.ndarray, start: int, stop: int, reducer: Reducer[R], *,
                      batch_size: int = 1) -> Iterator[tuple[int, R]]:
        """Teacher-force every window (one at a time, from an empty cache) and hand the
        reducer the logits of positions ``start .. stop - 1`` in chunks of :data:`CHUNK`."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 2 or ids.shape[1] > self.n_ctx:
            raise QuantfidError(f"windows must be (n, <= {self.n_ctx}), got {ids.shape}")
        if not 0 <= start < stop <= ids.shape[1]:
            raise QuantfidError(f"positions {start}..{stop} outside a window of {ids.shape[1]}")
        for w, row in enumerate(ids):
            self._eval(row)
            for out in self._reduce(reducer, w, start, stop):
                yield w, out

    def loglikelihood(self, requests: Sequence[LoglikRequest], reducer: Reducer[R] | None = None,
                      *, batch_size: int = 8) -> Iterator[tuple[int, LoglikResult[R]]]:
        """Each request's context once, then each continuation from the cached prefix (see
        the module docstring); the gold sequence's positions go to ``reducer``."""
        for i, req in enumerate(requests):
            yield i, self._loglik_one(i, req, reducer)

    def _loglik_one(self, i: int, req: LoglikRequest,
                    reducer: Reducer[R] | None) -> LoglikResult[R]:
        n_p = len(req.context)
        if n_p < 1 or not req.continuations or any(len(c) < 1 for c in req.continuations):
            raise QuantfidError(f"request {req.id!r}: empty context or continuation")
        self._eval(req.context)
        first = torch.log_softmax(self._logits(n_p - 1, n_p).float(), dim=-1)[0]   # (V,)
        ll = np.zeros(len(req.continuations), dtype=np.float64)
        greedy = np.zeros(len(req.continuations), dtype=bool)
        reduced: list[R] = []
        for c, cont in enumerate(req.continuations):
            tgt = torch.from_numpy(np.asarray(cont, dtype=np.int64))
            lps, hit = [first[tgt[0]].reshape(1)], bool(first.argmax() == tgt[0])
            if len(cont) > 1:
                self._eval(cont[:-1], n_past=n_p)
                rest = torch.log_softmax(self._logits(n_p, n_p + len(cont) - 1).float(), -1)
                lps.append(rest.gather(-1, tgt[1:, None])[:, 0])
                hit = hit and bool((rest.argmax(-1) == tgt[1:]).all())
            ll[c] = float(torch.cat(lps).double().sum())
            greedy[c] = hit
            if reducer is not None and c == req.gold:
                reduced = list(self._reduce(reducer, i, 0, n_p + len(cont) - 1))
        return LoglikResult(loglik=ll, is_greedy=greedy, reduced=reduced)

    def generate(self, prompts: Sequence[str], *, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[int, str]]:
        """Greedy completion of each prompt (see the module docstring)."""
        vocab = self.llm._model.vocab
        for i, prompt in enumerate(prompts):
            ids = self.tokenize(prompt, special=True)
            self._eval(ids)
            new: list[int] = []
            text = ""
            while len(new) < max_tokens:
                nxt = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
                if self._lc.llama_vocab_is_eog(vocab, nxt):
                    break
                new.append(nxt)
                text = self.detokenize(new)
                hits = [(text.find(s), s) for s in stop if s and s in text]
                if hits:
                    text = text[:min(hits)[0]]
                    break
                if len(new) == max_tokens or self.llm.n_tokens >= self.n_ctx:
                    break
                self._eval([nxt], n_past=self.llm.n_tokens)
            yield i, text


def open_llamacpp(spec: ModelSpec) -> LlamaCppBackend:
    """The registry factory: ``spec.source`` is a GGUF path or ``embedded``; options ``n_ctx``
    (default 2048) and ``threads``."""
    if spec.source in ("", "embedded"):
        from quantfid import embedded

        path: Path = embedded.gguf_path()
    else:
        path = Path(spec.source)
    n_ctx = int(spec.option("n_ctx", DEFAULT_N_CTX) or DEFAULT_N_CTX)
    return LlamaCppBackend(path, n_ctx=n_ctx, role=spec.role, name=spec.id,
                           threads=spec.option("threads"))
