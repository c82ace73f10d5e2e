"""Planning: corpora into windows, prompts into requests, models into units.

Everything a unit needs is fixed here, once, with the reference's tokenizer: the token
windows of every corpus x context (``quantfid.corpus``, llama.cpp's windowing) and the
encoded prompts of every benchmark (lm-eval's context/continuation split,
``quantfid.bench.encode``). Every model then runs on exactly those ids (their tokenizers are
checked to be the reference's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantfid.backends.base import Backend, LoglikRequest
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_json
from quantfid.models import ModelRef
from quantfid.units.defs import (
    BenchUnit,
    CorpusWindows,
    FidelityUnit,
    PromptSet,
    ReferenceUnit,
    StoredReference,
    Unit,
)


class _Tokenizer:
    """A backend's tokenizer in the ``tokenizer(text)["input_ids"]`` form the encoders use."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.eos_token_id = backend.eos_id()

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": self.backend.tokenize(text, bos=False).tolist()}


def corpus_windows(backend: Backend, spec: str, contexts: Sequence[int],
                   chunks: Sequence[int | None], scoring: str = "llamacpp") -> list[CorpusWindows]:
    """One corpus cut into windows at each context length (``chunks``: windows per context,
    None for all). Only a long enough prefix of the text is tokenized."""
    from quantfid import corpus

    c = corpus.load_corpus(spec)
    bos = backend.bos_id()
    bounded = [ctx * n for ctx, n in zip(contexts, chunks, strict=True) if n is not None]
    need = max(bounded) if len(bounded) == len(contexts) else None
    text = c.text if need is None else c.text[: max(need * 8, 20_000)]
    toks = backend.tokenize(text)
    if need is not None and len(toks) < need and len(text) < len(c.text):
        toks = backend.tokenize(c.text)
    return [CorpusWindows(c.name, c.hash, corpus.make_windows(toks, ctx, bos, scoring,
                                                               max_chunks=n), c.to_json())
            for ctx, n in zip(contexts, chunks, strict=True)]


def encode_requests(backend: Backend, prompts: Sequence[Any]) -> tuple[LoglikRequest, ...]:
    """Prompts -> requests: choice prompts as lm-eval splits them (gold = the answer);
    text prompts (no answer) score their last token as the one continuation."""
    from quantfid.bench.encode import encode_prompt
    from quantfid.bench.types import ChoicePrompt

    tok = _Tokenizer(backend)
    out = []
    for p in prompts:
        if isinstance(p, ChoicePrompt):
            e = encode_prompt(tok, p)
            out.append(LoglikRequest(e.id, e.context, e.continuations, e.gold))
            continue
        ids = backend.tokenize(p.text, bos=False)
        if len(ids) < 2:
            raise QuantfidError(f"prompt {p.id!r} has fewer than 2 tokens: nothing to score")
        out.append(LoglikRequest(p.id, ids[:-1], (ids[-1:],), 0))
    return tuple(out)


def prompt_set(backend: Backend, benchmark: str, prompts: Sequence[Any], *, outcomes: bool,
               info: dict[str, Any] | None = None) -> PromptSet:
    """A prompt set encoded with ``backend``'s tokenizer (ids checked unique)."""
    ids = [p.id for p in prompts]
    if not ids:
        raise QuantfidError(f"benchmark {benchmark}: no prompts")
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise QuantfidError(f"benchmark {benchmark}: prompt id {dup!r} appears more than once")
    return PromptSet(benchmark, tuple(prompts), encode_requests(backend, prompts),
                     hash_json([p.to_json() for p in prompts]), outcomes, dict(info or {}))


def task_prompt_set(backend: Backend, task: str, *, limit: int | None = None,
                    full: bool = False) -> PromptSet:
    """A built-in task's prompts (its default subset, or ``full``, cut to ``limit``)."""
    from quantfid.bench.tasks import get_task, load_prompts

    t = get_task(task)
    info = {"source": getattr(t, "source", ""), "licence": getattr(t, "licence", ""),
            "chance": t.chance, "n_default": t.n_default, "n_full": t.n_full}
    return prompt_set(backend, task, load_prompts(task, full=full, limit=limit), outcomes=True,
                      info=info)


@dataclass(frozen=True)
class Settings:
    """How units run: reference store kind, bootstrap resamples and seed, batch sizes."""

    store: str = "compact"
    n_boot: int = 1000
    seed: int = 0
    window_batch: int = 1
    prompt_batch: int = 8


def plan_units(ref: ModelRef | StoredReference, quants: Sequence[ModelRef],
               corpora: Sequence[CorpusWindows], prompt_sets: Sequence[PromptSet],
               settings: Settings = Settings(), noise: ModelRef | None = None) -> list[Unit]:
    """Every unit, in run order: the reference's (stores, then its benchmarks), the noise
    floor (``noise``: the reference's perturbed twin, table ``noise_floor``), then per quant
    its fidelity units then its benchmark units (so one load serves all of a model's units)."""
    s = settings
    units: list[Unit] = []
    refs: list[ReferenceUnit | StoredReference] = []
    for cw in corpora:
        if isinstance(ref, StoredReference):
            refs.append(ref)
            continue
        ru = ReferenceUnit(ref, cw, s.store, s.window_batch)
        refs.append(ru)
        units.append(ru)
    ref_bench: list[BenchUnit] = []
    if isinstance(ref, ModelRef):
        ref_bench = [BenchUnit(ref, ps, None, s.prompt_batch) for ps in prompt_sets]
        units += ref_bench
    if noise is not None:
        units += [FidelityUnit(noise, r, s.n_boot, s.seed, "noise_floor", s.window_batch)
                  for r in refs]
    for q in quants:
        units += [FidelityUnit(q, r, s.n_boot, s.seed, batch_size=s.window_batch) for r in refs]
        units += [BenchUnit(q, rb.ps, rb, s.prompt_batch) for rb in ref_bench]
    return units


def forward_tokens(units: Sequence[Unit]) -> int:
    return int(np.sum([u.forward_tokens for u in units]))
