"""The backend protocol: what a runtime offers quantfid, split by capability.

Every command reaches a model through one of these, by registry name (``hf``, ``llamacpp``,
``http``; :mod:`quantfid.backends.registry`). Tasks and units never touch a model's internals.

Capabilities (``Backend.capabilities``):

``score``
    Teacher-forced distributions over windows of token ids (:meth:`WindowScorer.score_windows`).
    The comparison is *reduced where the logits live*: the caller passes a :class:`Reducer`,
    the backend hands it the logits of one chunk of positions at a time (on the device that
    computed them) and yields only the reducer's small result (per-token metrics or compact
    rows). No (positions x vocab) matrix ever reaches the caller, and the LM head runs in
    position chunks, so one window never materialises (ctx x V) twice.
``loglikelihood``
    Log-likelihood of continuations (multiple-choice benchmarks, as lm-eval's
    ``loglikelihood``), with the prompt prefix computed once per prompt; the gold sequence's
    distributions can go to a reducer in the same pass (per-prompt fidelity).
``generate``
    Greedy generation with stop sequences.
``module``
    A torch module that recipes can quantize (:class:`ModuleBackend`).

Servers that return only their top K log-probs per position (vLLM, SGLang, llama-cpp-python's
server) call :meth:`Reducer.topk` instead of :meth:`Reducer.full`.

Identity: :meth:`Backend.identity` (backend name, dtype, device *type* (``cpu``/``cuda``, not
the index, so units move between GPUs) and numerics) is part of every unit hash, beside the
model's content hash: the same weights run another way are another measurement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from quantfid.errors import QuantfidError
from quantfid.records import Model

if TYPE_CHECKING:  # torch is imported by the backends that need it, not by this protocol
    import torch

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

CAPABILITIES = ("score", "loglikelihood", "generate", "module")


@dataclass(frozen=True)
class Identity:
    """How a backend computes: part of every unit's identity.

    backend: registry name. dtype: ``float32`` | ``bfloat16`` | ``float16`` for torch, ``native``
    when the runtime computes in the file's own types (llama.cpp, servers). device: ``cpu``,
    ``cuda`` or ``remote`` (a server). numerics: ``weights`` (dequantized weights, float
    activations), ``ggml-cpu`` (llama.cpp's CPU numerics emulated), ``native`` (the runtime's own).
    """

    backend: str
    dtype: str
    device: str
    numerics: str

    def to_json(self) -> dict[str, str]:
        return {"backend": self.backend, "dtype": self.dtype, "device": self.device,
                "numerics": self.numerics}


@dataclass(frozen=True)
class TopKRows:
    """What a server returns for P positions: its top K ids and log-probs per position.

    ids: (P, K) int64, -1 where a position has fewer. logp: (P, K) float64 log-probs over the
    full vocabulary (as the server computed them), -inf padding. target_logp: (P,) log-prob of
    the next token (NaN where unknown). chosen_ids / chosen_logp: (P, M) log-probs of ids the
    caller asked for (SGLang ``token_ids_logprob``), or None.

    ``ids``/``logp`` hold the server's top K only; the next token goes in ``target_logp`` and
    chosen ids in ``chosen_*``. ``logp`` may be NaN for an id the server reports among its top
    K without a usable log-prob (llama-cpp-python's shared text keys): such ids are unknown and
    not capped by the K-th log-prob (``quantfid.metrics.topk``).
    """

    ids: np.ndarray
    logp: np.ndarray
    target_logp: np.ndarray
    chosen_ids: np.ndarray | None = None
    chosen_logp: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Reducer(Protocol[R_co]):
    """Reduces a chunk of one window's distributions to a small result.

    ``full(window, pos0, logits)``: logits (P, V) of positions ``pos0 .. pos0 + P - 1`` of window
    ``window`` (unnormalised, any float dtype, on the device that computed them); the reducer
    normalises them itself (float32 or better). ``topk``: the same for a server's top-K rows.
    ``wanted_ids(window, pos0, n)``: ids whose log-probs a server that can return chosen ids
    should fetch for those positions (None: nothing in particular).
    """

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> R_co: ...

    def topk(self, window: int, pos0: int, rows: TopKRows) -> R_co: ...

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None: ...


@runtime_checkable
class Backend(Protocol):
    """A loaded model in some runtime. ``capabilities`` says which of the protocols below it
    implements; :func:`require` checks one with a clear error."""

    name: str
    info: Model
    capabilities: frozenset[str]

    def identity(self) -> Identity: ...

    def vocab_size(self) -> int: ...

    def tokenizer_id(self) -> str: ...

    def bos_id(self) -> int | None:
        """The BOS id put at the start of each window (llama.cpp's ``add_bos``), or None."""
        ...

    def eos_id(self) -> int | None: ...

    def tokenize(self, text: str, bos: bool | None = None) -> np.ndarray:
        """int64 ids of ``text``, no special tokens except BOS (None: when the model adds one)."""
        ...

    def detokenize(self, ids: Sequence[int]) -> str: ...

    def close(self) -> None: ...


class WindowScorer(Backend, Protocol):
    def score_windows(self, ids: np.ndarray, start: int, stop: int, reducer: Reducer[R], *,
                      batch_size: int = 1) -> Iterator[tuple[int, R]]:
        """Teacher-force every window (row of ``ids``, shape (N, n_ctx), int64) and hand the
        distributions at positions ``start .. stop - 1`` to ``reducer`` in position chunks, in
        order; yields ``(window index, reducer result)`` per chunk."""
        ...


@dataclass(frozen=True)
class LoglikRequest:
    """One prompt's choices. context: (P >= 1,) ids; continuations: each (L >= 1,) ids.
    gold: the continuation whose whole sequence (context + continuation) is handed to the
    reducer, positions 0 .. len - 2 predicting ``gold_ids()[1:]``; None for no reduction."""

    id: str
    context: np.ndarray
    continuations: tuple[np.ndarray, ...]
    gold: int | None = None

    def gold_ids(self) -> np.ndarray:
        if self.gold is None:
            raise ValueError(f"request {self.id!r} has no gold continuation")
        return np.concatenate([self.context, self.continuations[self.gold]])

    @property
    def n_tokens(self) -> int:
        return int(len(self.context) + sum(len(c) for c in self.continuations))


@dataclass(frozen=True)
class LoglikResult(Generic[R]):
    """loglik: (n_choices,) float64 summed log-prob of each continuation (float32 log-probs
    summed in float64, as lm-eval); is_greedy: every continuation token is the argmax;
    reduced: the reducer's results over the gold sequence, in position order (empty without)."""

    loglik: np.ndarray
    is_greedy: np.ndarray
    reduced: list[R] = field(default_factory=list)


class LoglikScorer(Backend, Protocol):
    def loglikelihood(self, requests: Sequence[LoglikRequest], reducer: Reducer[R] | None = None,
                      *, batch_size: int = 8) -> Iterator[tuple[int, LoglikResult[R]]]:
        """Yield ``(request index, result)`` for every request (any order). The reducer sees
        window = the request's index."""
        ...


class TextGenerator(Backend, Protocol):
    def generate(self, prompts: Sequence[str], *, max_tokens: int,
                 stop: Sequence[str]) -> Iterator[tuple[int, str]]:
        """Greedy completions (text after the prompt, cut before the first stop sequence)."""
        ...


class ModuleBackend(Backend, Protocol):
    """A backend over a torch module that recipes can quantize."""

    module: torch.nn.Module
    tokenizer: Any

    def with_module(self, module: torch.nn.Module, info: Model,
                    numerics: str | None = None) -> ModuleBackend:
        """A backend running ``module`` (a quant built from this backend's) with this one's
        tokenizer, device and dtype."""
        ...


def require(backend: Backend, capability: str) -> None:
    """QuantfidError unless ``backend`` has ``capability``."""
    if capability not in backend.capabilities:
        have = ", ".join(sorted(backend.capabilities)) or "none"
        raise QuantfidError(f"model {backend.info.id!r} runs on the {backend.name} backend, which "
                            f"cannot {_VERB.get(capability, capability)} (it can: {have})")


_VERB = {"score": "score windows (fidelity)", "loglikelihood": "score multiple-choice prompts",
         "generate": "generate text", "module": "give a torch module to quantize"}


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _float32() -> Any:
    import torch

    return torch.float32


@dataclass
class LoadedModel:
    """A torch causal LM ready to run: the module, its tokenizer and its record."""

    module: torch.nn.Module
    tokenizer: Any
    info: Model
    device: torch.device = field(default_factory=_cpu)
    dtype: torch.dtype = field(default_factory=_float32)
