"""Greedy generation with stop sequences, and HumanEval pass@1 through the sandbox.

Generation: argmax decoding with a key/value cache, float32 logits; stops at the EOS
token, after ``max_new_tokens``, or at the first stop sequence in the decoded text (the
text is cut before it). HumanEval uses the Codex paper's stop sequences.

pass@1 with one greedy sample per problem: the completion is run against the problem's
tests by :mod:`quantfid.bench.execute` in a separate confined process, never here.
Per-prompt fidelity for generation tasks (the reference's greedy answer teacher-forced
through every model) is not implemented yet; the outcomes are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from quantfid._version import __version__
from quantfid.backends.base import LoadedModel
from quantfid.bench.execute import check_humaneval
from quantfid.hashing import hash_json
from quantfid.progress import bar
from quantfid.records import Outcome

HUMANEVAL_STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")


@dataclass(frozen=True)
class Generation:
    text: str
    token_ids: tuple[int, ...]
    stop: str | None  # the stop sequence hit, "eos", or None when max_new_tokens ran out


def _cache(out: Any) -> Any:
    c = getattr(out, "cache", None)
    return c if c is not None else getattr(out, "past_key_values", None)


@torch.inference_mode()
def greedy_generate(lm: LoadedModel, prompt: str, *, max_new_tokens: int = 256,
                    stop: Sequence[str] = ()) -> Generation:
    """Greedy continuation of ``prompt`` (no special tokens added)."""
    tok = lm.tokenizer
    ids = list(tok(prompt, add_special_tokens=False)["input_ids"])
    eos = getattr(tok, "eos_token_id", None)
    inp = torch.tensor([ids], dtype=torch.long, device=lm.device)
    cache = None
    new: list[int] = []
    text = ""
    for _ in range(max_new_tokens):
        out = lm.module(input_ids=inp, cache=cache, use_cache=True)
        cache = _cache(out)
        nxt = int(out.logits[0, -1].float().argmax())
        if eos is not None and nxt == eos:
            return Generation(text, tuple(new), "eos")
        new.append(nxt)
        text = tok.decode(new, skip_special_tokens=True)
        hits = [(text.find(s), s) for s in stop if s in text]
        if hits:
            pos, s = min(hits)
            return Generation(text[:pos], tuple(new), s)
        inp = torch.tensor([[nxt]], dtype=torch.long, device=lm.device)
    return Generation(text, tuple(new), None)


def humaneval_pass_at_1(lm: LoadedModel, problems: Sequence[dict[str, Any]], *,
                        benchmark: str = "humaneval_gen", max_new_tokens: int = 384,
                        timeout_s: float = 10.0, memory_mb: int = 1024,
                        progress: bool = True,
                        completions: list[str] | None = None) -> list[Outcome]:
    """One greedy sample per problem, executed in the sandbox: Outcome rows (pass@1).

    completions: if given, each problem's generated text is appended to it (in order).
    """
    rows = []
    pbar = bar(total=len(problems), desc=f"{benchmark} {lm.info.id}", unit="problem",
               disable=None if progress else True)
    for prob in problems:
        gen = greedy_generate(lm, prob["prompt"], max_new_tokens=max_new_tokens,
                              stop=HUMANEVAL_STOP)
        res = check_humaneval(prob, gen.text, timeout_s=timeout_s, memory_mb=memory_mb)
        if completions is not None:
            completions.append(gen.text)
        rows.append(Outcome(model=lm.info.id, benchmark=benchmark, prompt_id=prob["task_id"],
                            passed=res.passed, score=float(res.passed), samples=1,
                            source="quantfid", source_version=__version__,
                            prompt_hash=hash_json({"prompt": prob["prompt"]})[:16]))
        pbar.update(1)
    pbar.close()
    return rows
