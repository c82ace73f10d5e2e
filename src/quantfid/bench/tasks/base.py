"""The task protocol: a named, deterministic list of prompts with a default and a full size."""

from __future__ import annotations

from typing import Protocol

from quantfid.bench.types import ChoicePrompt


class Task(Protocol):
    """A built-in log-likelihood task.

    ``prompts()`` returns the full prompt list in a fixed (seeded) order; the default
    subset is its first ``n_default`` prompts, ``--full`` its first ``n_full``.
    """

    name: str
    n_default: int
    n_full: int
    chance: float  # expected accuracy of a uniform random pick
    source: str  # where the data comes from
    licence: str

    def prompts(self) -> list[ChoicePrompt]: ...
