"""transformers + torch loading: local directories, hub ids, GGUF files (dequantized).

``load_hf("embedded")`` (or None) loads the embedded default reference in float32;
``HFBackend`` runs a loaded model over windows and yields float32 log-prob chunks.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quantfid import embedded
from quantfid.backends.base import (
    Identity,
    LoadedModel,
    LoglikRequest,
    LoglikResult,
    R,
    Reducer,
)
from quantfid.backends.cpu_gemm import use_onednn
from quantfid.backends.hf_head import DEFAULT_CHUNK, ChunkedHead
from quantfid.errors import MismatchError, QuantfidError
from quantfid.hashing import hash_file, hash_json
from quantfid.records import Model, Role

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hash_dir(path: Path) -> str:
    """sha256 over a model directory's weight, config and tokenizer files (names + bytes)."""
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and p.suffix in {".safetensors", ".bin", ".json", ".model", ".txt", ".gguf"})
    return hash_json({p.relative_to(path).as_posix(): hash_file(p) for p in files})


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_hf(spec: str | None = None, dtype: str = "float32", device: str = "auto",
            role: Role = "quant", name: str | None = None) -> LoadedModel:
    """Load a causal LM with transformers.

    spec: None or ``"embedded"`` (the embedded default), a ``.gguf`` file (dequantized by
    transformers' GGUF loader), a local model directory, or a hub id (needs network).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise QuantfidError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    kwargs: dict[str, object] = {}
    if spec in (None, "embedded"):
        path = embedded.gguf_path()
        src, kwargs["gguf_file"] = str(path.parent), path.name
        info = Model(id=name or embedded.MODEL_ID, role=role, source=f"embedded:{path.name}",
                     format="gguf", scheme="f32-from-Q4_1", hash=hash_file(path))
    elif spec.endswith(".gguf"):
        path = Path(spec)
        if not path.is_file():
            raise QuantfidError(f"GGUF file not found: {spec}")
        src, kwargs["gguf_file"] = str(path.resolve().parent), path.name
        info = Model(id=name or path.stem, role=role, source=str(path), format="gguf",
                     hash=hash_file(path))
    elif Path(spec).is_dir():
        src = spec
        info = Model(id=name or Path(spec).name, role=role, source=str(Path(spec).resolve()),
                     format="hf", hash=hash_dir(Path(spec)))
    elif Path(spec).exists():
        raise QuantfidError(f"{spec} is a file but not a .gguf; give a GGUF file or a model directory")
    else:
        src = spec
        info = Model(id=name or spec, role=role, source=spec, format="hf")
    try:
        tok = AutoTokenizer.from_pretrained(src, **kwargs)
        module = AutoModelForCausalLM.from_pretrained(src, dtype=DTYPES[dtype], **kwargs)
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: hub ids need network)" if offline else ""
        raise QuantfidError(f"could not load model {spec!r}{hint}: {e}") from e
    if info.hash is None:  # a hub id: key it by the revision that was loaded
        commit = getattr(module.config, "_commit_hash", None)
        info = dataclasses.replace(info, hash=hash_json({"hub": spec, "commit": commit}))
    dev = resolve_device(device)
    torch.nn.Module.to(module, dev).eval()
    if dev.type == "cpu":  # the CPU product every quantfid path uses (backends.cpu_gemm)
        use_onednn(module)
    return LoadedModel(module=module, tokenizer=tok, info=info, device=dev, dtype=DTYPES[dtype])


def tokenizer_id(tokenizer: Any) -> str:
    """A stable identity of a tokenizer: sha256 of its vocabulary (token strings in id
    order, gaps marked) and its BOS/EOS ids. Two tokenizers with the same id map text the
    same way for any BPE/unigram vocab that is built from these strings."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    by_id: list[str | None] = [None] * (max(vocab.values()) + 1 if vocab else 0)
    for tok, i in vocab.items():
        by_id[i] = tok
    return hash_json({"vocab": by_id, "bos": tokenizer.bos_token_id,
                      "eos": tokenizer.eos_token_id})


def check_same_tokenizer(ref_id: str, ref_name: str, other_id: str, other_name: str) -> None:
    """Raise MismatchError unless the two tokenizer ids agree."""
    if ref_id != other_id:
        raise MismatchError(
            f"tokenizer of {other_name!r} ({other_id[:12]}) differs from the reference "
            f"{ref_name!r} ({ref_id[:12]}): their log-probs are over different token streams "
            "and cannot be compared")


def adds_bos(tokenizer: Any) -> bool:
    """Whether the model's tokenizer puts BOS in front of text (llama.cpp's ``add_bos``)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


class HFBackend:
    """A transformers causal LM on CPU or CUDA: the ``score``, ``loglikelihood``, ``generate``
    and ``module`` capabilities of :mod:`quantfid.backends.base`.

    Windows run in batches under ``torch.inference_mode``; the body runs once per batch and
    the LM head per chunk of ``chunk`` positions (:mod:`quantfid.backends.hf_head`); each
    chunk's logits go to the reducer where they were computed (CPU or GPU tensors, the model's
    dtype: the reducer normalises them in float32 or better). ``numerics`` names how the
    module computes (``weights``: as loaded; ``ggml-cpu``: llama.cpp's CPU numerics emulated by
    :mod:`quantfid.quantize.numerics`, applied by whoever built the module). On the CPU,
    float32 linear layers run through oneDNN (:mod:`quantfid.backends.cpu_gemm`).
    """

    name = "hf"
    capabilities = frozenset({"score", "loglikelihood", "generate", "module"})

    def __init__(self, loaded: LoadedModel, threads: int | None = None,
                 numerics: str = "weights", chunk: int = DEFAULT_CHUNK) -> None:
        self.loaded = loaded
        self.module: Any = loaded.module
        self.tokenizer = loaded.tokenizer
        self.info = loaded.info
        self.device = loaded.device
        self.numerics = numerics
        if threads:
            torch.set_num_threads(threads)
        if self.device.type == "cpu":
            use_onednn(self.module)
        self._tok_id: str | None = None
        self.head = ChunkedHead(self.module, self.device, chunk)

    @classmethod
    def load(cls, spec: str | None = None, dtype: str = "float32", device: str = "auto",
             role: Role = "quant", name: str | None = None) -> HFBackend:
        return cls(load_hf(spec, dtype=dtype, device=device, role=role, name=name))

    def identity(self) -> Identity:
        dtype = next(k for k, v in DTYPES.items() if v == self.loaded.dtype)
        return Identity("hf", dtype, self.device.type, self.numerics)

    def with_module(self, module: torch.nn.Module, info: Model,
                    numerics: str | None = None) -> HFBackend:
        loaded = LoadedModel(module=module, tokenizer=self.tokenizer, info=info,
                             device=self.device, dtype=self.loaded.dtype)
        out = HFBackend(loaded, numerics=numerics or self.numerics, chunk=self.head.chunk)
        out._tok_id = self._tok_id
        return out

    def close(self) -> None:
        self.module = None

    def vocab_size(self) -> int:
        """Rows of the output projection (the width of every log-prob vector)."""
        out = self.module.get_output_embeddings()
        if out is not None and hasattr(out, "weight"):
            return int(out.weight.shape[0])
        return int(self.module.config.vocab_size)

    def tokenizer_id(self) -> str:
        if self._tok_id is None:
            self._tok_id = tokenizer_id(self.tokenizer)
        return self._tok_id

    def bos_id(self) -> int | None:
        """The BOS id llama.cpp would put at the start of each chunk, or None."""
        return int(self.tokenizer.bos_token_id) if adds_bos(self.tokenizer) else None

    def eos_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return None if eos is None else int(eos)

    def tokenize(self, text: str, bos: bool | None = None) -> np.ndarray:
        """Token ids (int64) of ``text``; BOS prepended when the model adds one."""
        from quantfid.corpus import tokenize

        use = self.bos_id() if bos is None else (self.tokenizer.bos_token_id if bos else None)
        return tokenize(text, self.tokenizer, use)

    def detokenize(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=False))

    def score_windows(self, ids: np.ndarray, start: int, stop: int, reducer: Reducer[R], *,
                      batch_size: int = 1) -> Iterator[tuple[int, R]]:
        """Hand the logits at positions ``start .. stop - 1`` of every window to ``reducer``,
        chunk by chunk; yields ``(window, result)`` (see the protocol)."""
        arr = np.asarray(ids, dtype=np.int64)
        if arr.ndim != 2:
            raise QuantfidError(f"windows must be (n, n_ctx), got shape {arr.shape}")
        if not 0 <= start < stop <= arr.shape[1]:
            raise QuantfidError(f"positions {start}..{stop} outside a window of {arr.shape[1]}")
        with torch.inference_mode():
            for b0 in range(0, arr.shape[0], batch_size):
                x = torch.from_numpy(arr[b0:b0 + batch_size]).to(self.device)
                for i, p0, logits in self.head.window_chunks(x, start, stop):
                    yield b0 + i, reducer.full(b0 + i, p0, logits())

    def loglikelihood(self, requests: Sequence[LoglikRequest], reducer: Reducer[R] | None = None,
                      *, batch_size: int = 8) -> Iterator[tuple[int, LoglikResult[R]]]:
        from quantfid.backends.hf_loglik import iter_loglik

        yield from iter_loglik(self.head, requests, reducer, batch_size)

    def generate(self, prompts: Sequence[str], *, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[int, str]]:
        from quantfid.backends.hf_generate import greedy

        for i, p in enumerate(prompts):
            yield i, greedy(self.module, self.tokenizer, self.device, p, max_tokens=max_tokens,
                            stop=stop).text


def open_hf(spec: Any) -> HFBackend:
    """The registry's ``hf`` factory: a ``quantfid.models.ModelSpec`` of kind embedded, gguf,
    dir or hub, loaded with transformers (numerics are applied by ``quantfid.pool``)."""
    if spec.kind not in ("embedded", "gguf", "dir", "hub"):
        raise QuantfidError(f"the hf backend cannot open a {spec.kind} ({spec.source!r})")
    src = None if spec.kind == "embedded" else spec.source
    loaded = load_hf(src, dtype=spec.dtype, device=spec.device, role=spec.role, name=spec.id)
    return HFBackend(loaded, chunk=int(spec.option("chunk", DEFAULT_CHUNK)))
