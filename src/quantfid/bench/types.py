"""Prompt records shared by the built-in tasks, the scorer and per-prompt fidelity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantfid.hashing import hash_json


@dataclass(frozen=True)
class ChoicePrompt:
    """A log-likelihood multiple-choice prompt, as lm-eval's ``loglikelihood`` requests.

    context: the text every choice continues (the prompt).
    choices: the continuations, scored by the summed log-prob of their tokens given ``context``.
    gold: index of the correct continuation in ``choices``.
    """

    id: str
    context: str
    choices: tuple[str, ...]
    gold: int

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"prompt {self.id!r} has no choices")
        if not 0 <= self.gold < len(self.choices):
            raise ValueError(f"prompt {self.id!r}: gold {self.gold} out of range")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "context": self.context, "choices": list(self.choices),
                "gold": self.gold}


def prompt_set_hash(prompts: list[ChoicePrompt]) -> str:
    """Hash of a prompt set's exact texts, choices and gold indices (order included)."""
    return hash_json([p.to_json() for p in prompts])


@dataclass(frozen=True)
class TextPrompt:
    """A prompt without choices (``--prompts FILE.jsonl`` rows without an answer): its last
    token is scored as the one continuation."""

    id: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.text}
