"""The report's first screen: the verdict in one sentence, the numbers behind it, and the
caveats that change its reading (unresolved zones, numerics, the embedded reference)."""

from __future__ import annotations

from quantfid.analysis.verdict import Verdict
from quantfid.report.blocks import Block, Bullets, Note, Para

EMBEDDED_SHORT = ("Reference: the embedded SmolLM2-135M, the float32 expansion of a 4-bit "
                  "checkpoint; a Q4_1 quant of it is (nearly) lossless. Details under Method.")


def first_screen(v: Verdict, embedded_ref: bool) -> list[Block]:
    blocks: list[Block] = [Para(v.headline, strong=True, id="verdict")]
    if v.findings:
        blocks.append(Bullets(tuple(v.findings), id="numbers"))
    blocks += [Note(c) for c in v.caveats]
    if embedded_ref:
        blocks.append(Note(EMBEDDED_SHORT))
    return blocks
