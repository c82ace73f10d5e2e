"""The core records every stage exchanges (see DESIGN.md, "Core records").

They are plain frozen dataclasses; ``to_dict``/``from_dict`` give the JSON / Parquet row form.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

Role = Literal["reference", "quant"]
R = TypeVar("R", bound="_Record")


class _Record:
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[R], row: dict[str, Any]) -> R:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclass(frozen=True)
class Model(_Record):
    """A model of a cohort.

    id: the name every command uses (recipe name, file stem, hub id or ``--name``).
    role: ``reference`` (exactly one per workspace) or ``quant``.
    source: where it comes from (a path, a hub id, ``recipe:<name>@<reference id>``).
    format: ``gguf``, ``hf``, ``recipe``, ``safetensors``, ``llamacpp-kld-base``, ``external``.
    scheme: the quantization scheme (``Q4_K_M``, ``rtn-w4g64-asym``, ``f32``...), or None.
    bits_per_weight: quantized weight bytes x 8 / weight elements, over every weight tensor.
    bytes: size of the weights in bytes as quantized (None when unknown).
    hash: content hash of the weights or of the recipe and its reference (None when unknown).
    """

    id: str
    role: Role = "quant"
    source: str = ""
    format: str = ""
    scheme: str | None = None
    bits_per_weight: float | None = None
    bytes: int | None = None
    hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome(_Record):
    """One model's result on one benchmark prompt.

    passed: the pass/fail the analyses use (``acc``; ``exact_match``; pass@1 >= threshold).
    score: the raw per-prompt score where the source gives one (e.g. pass@1 over samples).
    samples: how many samples the score is over (1 for log-likelihood tasks).
    prompt_hash: the source's hash of the prompt/document, where it gives one.
    """

    model: str
    benchmark: str
    prompt_id: str
    passed: bool
    score: float | None = None
    samples: int = 1
    source: str = "quantfid"
    source_version: str | None = None
    prompt_hash: str | None = None


@dataclass(frozen=True)
class PromptFidelity(_Record):
    """Per-prompt fidelity of ``model`` against the workspace reference on one benchmark prompt.

    All KL values are KL(P_ref || P_model) in nats over the prompt's scored tokens.
    """

    model: str
    benchmark: str
    prompt_id: str
    n_tokens: int
    kld_mean: float
    kld_max: float
    kld_sum: float
    rkld_mean: float | None = None
    jsd_mean: float | None = None
    same_top1: float | None = None
    dp_mean: float | None = None
    nll_ref_mean: float | None = None
    nll_q_mean: float | None = None
