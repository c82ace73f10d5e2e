"""Last-word cloze over held-out English documentation (``cloze``).

Text: IDLE's help page and change log, ``idlelib/help.html`` and ``idlelib/NEWS.txt``
from the Python standard library of the running interpreter (PSF licence; NEWS entries
lose their ``gh-NNN:`` / ``bpo-NNN:`` / ``-`` prefixes). They are not among quantfid's
calibration corpora (``quantfid.corpus``), so the task measures held-out text. The prompt
set is hashed: another Python version's files give another (recognisably different) set.

Sentences of ``MIN_WORDS``..``MAX_WORDS`` words ending in a lowercase alphabetic word of
at least 3 letters followed by ``.`` are kept, in text order, deduplicated. Context: the
sentence without its last word; gold: ``" " + last word``. Distractors: 3 other words
of the same frequency class (``floor(log2(count))`` of lowercase alphabetic words of
>= 3 letters over the whole text) that do not occur in the sentence, drawn with
``numpy.random.default_rng([SEED, k])``; choice order seeded too. The prompts are
listed in a seeded order so the default subset is a random sample.
"""

from __future__ import annotations

import html.parser
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np

from quantfid.bench.types import ChoicePrompt
from quantfid.errors import QuantfidError

NAME = "cloze"
SEED = 31_337
N_DEFAULT = 160
N_FULL = 300
N_CHOICES = 4
MIN_WORDS, MAX_WORDS = 6, 24
LICENCE = "PSF (Python standard library: idlelib/help.html)"

_WORD = re.compile(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])")
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


class _Text(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "pre"):
            self._skip += 1
        elif tag in ("p", "li", "dd", "dt", "h1", "h2", "h3", "div", "br"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "pre") and self._skip:
            self._skip -= 1
        elif tag in ("p", "li", "dd", "dt", "h1", "h2", "h3", "div"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data.replace("\n", " "))


def source_paths() -> tuple[Path, Path]:
    """``idlelib/help.html`` and ``idlelib/NEWS.txt`` of the running Python."""
    import idlelib

    d = Path(idlelib.__file__).parent
    paths = (d / "help.html", d / "NEWS.txt")
    for p in paths:
        if not p.exists():
            raise QuantfidError(f"cloze: {p} is missing from this Python installation")
    return paths


def news_paragraphs(text: str) -> list[str]:
    """NEWS.txt entries (blank-line separated) without their issue-number prefixes."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        flat = " ".join(para.split())
        flat = re.sub(r"^(-\s*)?((gh|bpo)-\d+:\s*)?", "", flat)
        if flat:
            out.append(flat)
    return out


def text_paragraphs(raw_html: str) -> list[str]:
    """The page's visible text as whitespace-normalised paragraphs."""
    parser = _Text()
    parser.feed(raw_html)
    paras = "".join(parser.parts).split("\n")
    return [" ".join(p.split()) for p in paras if p.strip()]


def sentences(paragraphs: list[str]) -> list[str]:
    out: list[str] = []
    for para in paragraphs:
        out.extend(s.strip() for s in _SENT_END.split(para) if s.strip())
    return out


def build_prompts(paragraphs: list[str], seed: int = SEED) -> list[ChoicePrompt]:
    """All usable sentences of ``paragraphs`` as cloze prompts, in the seeded order."""
    sents = sentences(paragraphs)
    counts = Counter(w for s in sents for w in _WORD.findall(s))
    cls = {w: int(math.log2(c)) for w, c in counts.items()}
    by_cls: dict[int, list[str]] = {}
    for w in sorted(counts):
        by_cls.setdefault(cls[w], []).append(w)
    prompts: list[ChoicePrompt] = []
    seen: set[str] = set()
    for s in sents:
        words = s.split(" ")
        m = re.fullmatch(r"([a-z]{3,})\.", words[-1])
        if not m or not MIN_WORDS <= len(words) <= MAX_WORDS or s in seen:
            continue
        seen.add(s)
        gold = m.group(1)
        in_sent = set(_WORD.findall(s.lower()))
        pool = [w for w in by_cls[cls[gold]] if w not in in_sent]
        if len(pool) < N_CHOICES - 1:
            continue
        k = len(prompts)
        rng = np.random.default_rng([seed, k])
        picked = [pool[i] for i in rng.choice(len(pool), N_CHOICES - 1, replace=False).tolist()]
        values = [gold, *picked]
        order = rng.permutation(N_CHOICES).tolist()
        prompts.append(ChoicePrompt(id=f"cloze-{k:04d}", context=" ".join(words[:-1]),
                                    choices=tuple(f" {values[i]}" for i in order),
                                    gold=order.index(0)))
    perm = np.random.default_rng(seed).permutation(len(prompts)).tolist()
    return [prompts[i] for i in perm]


class Cloze:
    name = NAME
    n_default = N_DEFAULT
    n_full = N_FULL
    chance = 1.0 / N_CHOICES
    source = "Python standard library: idlelib/help.html"
    licence = LICENCE

    def prompts(self) -> list[ChoicePrompt]:
        help_html, news = source_paths()
        return build_prompts(text_paragraphs(help_html.read_text(encoding="utf-8"))
                             + news_paragraphs(news.read_text(encoding="utf-8")))
