"""The Backend protocol and the loaded-model record shared by every runner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from quantfid.records import Model


@dataclass
class LoadedModel:
    """A torch causal LM ready to run: the module, its tokenizer and its record."""

    module: torch.nn.Module
    tokenizer: Any
    info: Model
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32


class Backend(Protocol):
    """Turns windows of token ids into log-probs, streamed chunk by chunk.

    ``logprobs(windows, batch_size, start, stop)`` takes int64 ids of shape (B, n_ctx) and
    yields, per batch, a float32 tensor of shape (b, stop - start, V): log-softmax over the
    vocabulary at positions ``start..stop-1`` (the LM head runs only there), computed in
    float32 or better. Nothing holds corpus x vocab in memory.
    """

    info: Model

    def vocab_size(self) -> int: ...

    def tokenizer_id(self) -> str: ...

    def bos_id(self) -> int | None: ...

    def logprobs(self, windows: np.ndarray, batch_size: int = 1, start: int = 0,
                 stop: int | None = None) -> Iterator[torch.Tensor]: ...
