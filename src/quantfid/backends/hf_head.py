"""The LM head in position chunks: hidden states once, logits a chunk of positions at a time.

A causal LM's forward is ``logits = head(norm(body(ids)))``. :class:`ChunkedHead` runs the body
(the base model, final norm included) once per batch of windows and applies the output
projection to ``chunk`` positions at a time, so a window of n_ctx positions never holds
(n_ctx x V) logits, let alone twice (logits, then their log-softmax).

Architectures that post-process the projection are handled from their config:
``final_logit_softcapping`` (Gemma 2/3: ``cap * tanh(logits / cap)``), ``logit_scale``
(Cohere: ``logits * scale``), ``logits_scaling`` (Granite: ``logits / scaling``). At
construction a self-check compares the chunked path with the module's own forward on a few
tokens; when they differ (an architecture this file does not know), :class:`ChunkedHead`
falls back to the module's forward with ``logits_to_keep`` (logits of the scored positions
materialised once per window; chunks are then views).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

DEFAULT_CHUNK = 256
_CHECK_TOKENS = 8


class ChunkedHead:
    """Body once, head per chunk (see the module docstring)."""

    def __init__(self, module: torch.nn.Module, device: torch.device,
                 chunk: int = DEFAULT_CHUNK) -> None:
        self.module: Any = module
        self.device = device
        self.chunk = max(1, int(chunk))
        self.body: Any = getattr(module, getattr(module, "base_model_prefix", ""), None)
        get_out: Any = getattr(module, "get_output_embeddings", None)
        self.proj: Any = get_out() if callable(get_out) else None
        fwd = inspect.signature(module.forward).parameters
        self._keep_arg = "logits_to_keep" if "logits_to_keep" in fwd else None
        self.chunked = self.body is not None and self.proj is not None and self._self_check()

    # ---- the two halves ---------------------------------------------------------------------
    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """(b, T) ids -> (b, T, H) final hidden states (after the final norm)."""
        out = self.body(input_ids=ids, use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """(..., H) hidden states -> (..., V) logits, with the config's post-processing."""
        logits = self.proj(h)
        cfg = getattr(self.module, "config", None)
        cap = getattr(cfg, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        scale = getattr(cfg, "logit_scale", None)
        if isinstance(scale, int | float) and scale != 1:
            logits = logits * scale
        scaling = getattr(cfg, "logits_scaling", None)
        if isinstance(scaling, int | float) and scaling != 1:
            logits = logits / scaling
        return logits

    def _self_check(self) -> bool:
        ids = torch.arange(_CHECK_TOKENS, device=self.device)[None, :] % 7 + 1
        with torch.inference_mode():
            try:
                mine = self.head(self.hidden(ids))
            except (TypeError, AttributeError, RuntimeError, ValueError):
                return False
            theirs = self.module(input_ids=ids, use_cache=False).logits
        return bool(mine.shape == theirs.shape and torch.allclose(mine, theirs, rtol=1e-5,
                                                                   atol=1e-5))

    # ---- windows -------------------------------------------------------------------------------
    def window_chunks(self, ids: torch.Tensor, start: int, stop: int
                      ) -> list[tuple[int, int, Any]]:
        """For a batch of windows (b, T): per window, the scored positions split in chunks,
        as ``(window in batch, pos0, logits thunk)``; calling a thunk computes that chunk's
        (P, V) logits. Chunks of one batch share the body's hidden states."""
        if self.chunked:
            h = self.hidden(ids)  # (b, T, H)
            return [(i, p0, _Thunk(self.head, h[i, p0:min(stop, p0 + self.chunk)]))
                    for i in range(ids.shape[0]) for p0 in range(start, stop, self.chunk)]
        kwargs: dict[str, Any] = {"use_cache": False}
        if self._keep_arg:
            kwargs[self._keep_arg] = torch.arange(start, stop, device=self.device)
        logits = self.module(input_ids=ids, **kwargs).logits  # (b, P, V)
        if not self._keep_arg:
            logits = logits[:, start:stop]
        return [(i, p0, _View(logits[i, p0 - start:min(stop, p0 + self.chunk) - start]))
                for i in range(ids.shape[0]) for p0 in range(start, stop, self.chunk)]


class _Thunk:
    def __init__(self, head: Any, h: torch.Tensor) -> None:
        self.head, self.h = head, h

    def __call__(self) -> torch.Tensor:
        return self.head(self.h)


class _View:
    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def __call__(self) -> torch.Tensor:
        return self.t
