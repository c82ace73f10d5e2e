"""Which part of a workspace an analysis reads: the configured cohort.

A workspace may hold models, corpora and benchmarks that other commands added; a study
analyses only what its configuration names. ``Selection`` says so (each field None = all):

* ``models``: quant ids (the reference is always the workspace's);
* ``variants``: (corpus, ctx) pairs of the ``fidelity`` (and ``noise_floor``) table;
* ``benchmarks``: benchmark names of the ``outcomes`` / ``prompt_fidelity`` tables.

``run_all(ws, select=Selection(...))`` applies it; ``Selection.of(...)`` builds one from plain
lists. A name the workspace does not have is a ``QuantfidError`` (one clear line).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from quantfid.errors import QuantfidError


@dataclass(frozen=True)
class Selection:
    models: tuple[str, ...] | None = None
    variants: tuple[tuple[str, int | None], ...] | None = None
    benchmarks: tuple[str, ...] | None = None

    @staticmethod
    def of(models: Iterable[str] | None = None,
           variants: Iterable[tuple[str, int | None]] | None = None,
           benchmarks: Iterable[str] | None = None) -> Selection:
        return Selection(
            None if models is None else tuple(str(m) for m in models),
            None if variants is None else tuple((str(c), None if x is None else int(x))
                                                for c, x in variants),
            None if benchmarks is None else tuple(str(b) for b in benchmarks))

    def model_ok(self, model: str) -> bool:
        return self.models is None or model in self.models

    def variant_ok(self, corpus: Any, ctx: Any) -> bool:
        if self.variants is None:
            return True
        return (str(corpus), None if ctx is None else int(ctx)) in self.variants

    def benchmark_ok(self, benchmark: str) -> bool:
        return self.benchmarks is None or benchmark in self.benchmarks

    def to_json(self) -> dict[str, Any]:
        return {"models": None if self.models is None else list(self.models),
                "variants": None if self.variants is None else [list(v) for v in self.variants],
                "benchmarks": None if self.benchmarks is None else list(self.benchmarks)}


ALL = Selection()


def check_known(what: str, wanted: tuple[Any, ...] | None, have: Iterable[Any], where: str) -> None:
    """Refuse a selection naming something the workspace lacks."""
    if wanted is None:
        return
    known = set(have)
    missing = [w for w in wanted if w not in known]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise QuantfidError(f"{where}: selected {what} not in the workspace: {shown}")
