"""Built-in tasks: sizes, deterministic seeded distractors, gold answers checked independently."""

from __future__ import annotations

import math
import re
from collections import Counter
from fractions import Fraction

import pytest

from quantfid.bench.tasks import (
    DEFAULT_TASKS,
    arith_mc,
    cloze,
    get_task,
    humaneval_mc,
    load_prompts,
    resolve_tasks,
)
from quantfid.bench.types import prompt_set_hash
from quantfid.errors import QuantfidError


def test_sizes() -> None:
    assert sum(len(load_prompts(t)) for t in DEFAULT_TASKS) >= 300
    assert sum(len(load_prompts(t, full=True)) for t in DEFAULT_TASKS) >= 600
    assert len(load_prompts("cloze", limit=7)) == 7
    for t in DEFAULT_TASKS:
        ps = load_prompts(t, full=True)
        assert len({p.id for p in ps}) == len(ps)
        assert load_prompts(t) == ps[:get_task(t).n_default]
    assert resolve_tasks("all") == list(DEFAULT_TASKS)
    with pytest.raises(QuantfidError, match="unknown task"):
        resolve_tasks("cloze,nope")


@pytest.mark.parametrize("name", DEFAULT_TASKS)
def test_deterministic(name: str) -> None:
    a, b = get_task(name).prompts(), get_task(name).prompts()
    assert a == b and prompt_set_hash(a) == prompt_set_hash(b)
    for p in a:
        assert len(set(p.choices)) == len(p.choices)  # distinct choices


def test_seed_changes_distractors() -> None:
    probs = humaneval_mc.load_problems()
    a = humaneval_mc.build_prompts(probs, seed=1)
    b = humaneval_mc.build_prompts(probs, seed=2)
    assert prompt_set_hash(a) != prompt_set_hash(b)
    assert arith_mc.make_prompt(3, seed=1) != arith_mc.make_prompt(3, seed=2)


def test_humaneval_gold_and_distractors() -> None:
    probs = {p["task_id"]: p for p in humaneval_mc.load_problems()}
    sols = {tid: humaneval_mc.truncate_solution(p["canonical_solution"]) for tid, p in probs.items()}
    ps = get_task("humaneval_mc").prompts()
    assert len(ps) == 164
    for p in ps:
        assert p.context == probs[p.id]["prompt"]
        assert p.choices[p.gold] == sols[p.id]
        others = [c for i, c in enumerate(p.choices) if i != p.gold]
        assert len(others) == humaneval_mc.N_DISTRACTORS
        assert all(c in sols.values() and c != sols[p.id] for c in others)
        assert all(len([ln for ln in c.splitlines() if ln.strip()]) <= humaneval_mc.MAX_LINES
                   for c in p.choices)


def test_arith_gold_is_the_expression_value() -> None:
    for p in get_task("arith_mc").prompts():
        m = re.search(r"Answer: ([0-9 +*/-]+) =$", p.context)
        assert m, p.context
        expr = m.group(1)
        # independent evaluation with exact fractions, respecting precedence
        value = eval(re.sub(r"(\d+)", r"Fraction(\1)", expr), {"Fraction": Fraction})
        assert value.denominator == 1 and p.choices[p.gold] == f" {value.numerator}"
        nums = [int(c) for c in p.choices]
        assert len(set(nums)) == 4 and min(nums) >= 0


def test_cloze_gold_and_frequency_class() -> None:
    h, n = cloze.source_paths()
    paras = (cloze.text_paragraphs(h.read_text(encoding="utf-8"))
             + cloze.news_paragraphs(n.read_text(encoding="utf-8")))
    text = " ".join(paras)
    words = re.findall(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])", " ".join(cloze.sentences(paras)))
    freq = Counter(words)
    ps = get_task("cloze").prompts()
    assert len(ps) >= cloze.N_FULL
    for p in ps[:80]:
        gold = p.choices[p.gold].strip()
        assert f"{p.context} {gold}." in text
        for c in p.choices:
            w = c.strip()
            assert c.startswith(" ") and int(math.log2(freq[w])) == int(math.log2(freq[gold]))
            if w != gold:
                assert w not in re.findall(r"[a-z]+", p.context.lower())
