"""The units of work, their identities and where their results go.

A unit is independent and idempotent, keyed by the hash of everything that changes its
numbers: the model's content and backend identity (backend, dtype, device type, numerics),
the exact token windows or prompt set, the reference it is compared with, and the settings.
``quantfid measure``, ``bench`` and ``study`` plan the same units, so a unit one command
finished is skipped by the others (same part names, columns and hashes).

======================  =========================================  ==============================
unit                    result                                     done when
======================  =========================================  ==============================
ReferenceUnit           compact (or full) reference store          ``<store>/meta.json`` exists
                        ``arrays/reference/<corpus>-<ctx>-<scoring>-<hash16>``
FidelityUnit            ``tokens`` + ``fidelity`` parts            the ``fidelity`` part has the
                        (``noise_floor`` for the noise floor)      unit's hash
                        ``<model>@<corpus>-<hash8>@<ctx>@<scoring>``
BenchUnit (reference)   ``outcomes`` part ``<benchmark>@<model>``  the part has the hash and
                        + prompt store ``arrays/prompts/<b>/<h16>``  ``<store>/index.json`` exists
BenchUnit (quant)       ``outcomes`` + ``prompt_fidelity`` parts   both parts have the hash
======================  =========================================  ==============================
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantfid.backends.base import LoglikRequest
from quantfid.hashing import hash_json
from quantfid.models import ModelRef
from quantfid.records import Model
from quantfid.store.workspace import Workspace

# 3: float32 CPU products through oneDNN (quantfid.backends.cpu_gemm): other last bits, and
# under ggml-cpu numerics another draw of the activation rounding noise (docs/numerics.md)
UNIT_VERSION = 3


@dataclass(frozen=True)
class CorpusWindows:
    """A corpus cut into llama.cpp-style windows (``quantfid.corpus.Windows``)."""

    corpus: str
    corpus_hash: str
    windows: Any  # quantfid.corpus.Windows
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ctx(self) -> int:
        return int(self.windows.n_ctx)

    @property
    def scoring(self) -> str:
        return str(self.windows.scoring)

    @property
    def key(self) -> str:
        return f"{self.corpus}-{self.corpus_hash[:8]}@{self.ctx}@{self.scoring}"

    @property
    def forward_tokens(self) -> int:
        return len(self.windows) * self.ctx


@dataclass(frozen=True, eq=False)
class ReferenceUnit:
    """The reference over every window of one corpus x ctx, into a reference store."""

    model: ModelRef
    cw: CorpusWindows
    store: str = "compact"
    batch_size: int = 1

    stage = "reference"

    @functools.cached_property
    def hash(self) -> str:
        return hash_json({"v": UNIT_VERSION, "unit": "reference", "model": self.model.key,
                          "windows": self.cw.windows.hash, "corpus": self.cw.corpus_hash,
                          "store": self.store})

    @property
    def path(self) -> str:
        """The store, relative to the workspace."""
        return f"arrays/reference/{self.cw.corpus}-{self.cw.ctx}-{self.cw.scoring}-{self.hash[:16]}"

    @property
    def forward_tokens(self) -> int:
        return self.cw.forward_tokens

    def done(self, ws: Workspace) -> bool:
        return (ws.path / self.path / "meta.json").is_file()


@dataclass(frozen=True, eq=False)
class StoredReference:
    """A reference given as a file: a quantfid store directory or a llama.cpp kld-base file."""

    path: Path
    model: Model
    cw: CorpusWindows
    hash: str

    def done(self, ws: Workspace) -> bool:
        return True


@dataclass(frozen=True, eq=False)
class FidelityUnit:
    """One model over one corpus x ctx against the reference's store: per-token metrics
    (``tokens``) and their summary (``fidelity``, or ``noise_floor`` for the noise floor)."""

    model: ModelRef
    ref: ReferenceUnit | StoredReference
    n_boot: int = 1000
    seed: int = 0
    table: str = "fidelity"
    batch_size: int = 1

    @property
    def stage(self) -> str:
        return "noise" if self.table == "noise_floor" else "measure"

    @functools.cached_property
    def hash(self) -> str:
        return hash_json({"v": UNIT_VERSION, "unit": "fidelity", "model": self.model.key,
                          "reference": self.ref.hash, "n_boot": self.n_boot, "seed": self.seed,
                          "table": self.table})

    @property
    def part(self) -> str:
        return f"{self.model.id}@{self.ref.cw.key}"

    @property
    def forward_tokens(self) -> int:
        return self.ref.cw.forward_tokens

    def done(self, ws: Workspace) -> bool:
        return ws.has_part(self.table, self.part, self.hash)


@dataclass(frozen=True)
class PromptSet:
    """A benchmark's prompts, encoded once with the reference's tokenizer.

    prompts: the records (``ChoicePrompt`` or ``TextPrompt``) in order; requests: their
    token ids (``LoglikRequest``, gold = the continuation scored for fidelity); outcomes:
    whether the prompts have real choices (built-in tasks) and give pass/fail rows.
    """

    benchmark: str
    prompts: tuple[Any, ...]
    requests: tuple[LoglikRequest, ...]
    set_hash: str
    outcomes: bool = True
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def tokens_hash(self) -> str:
        return hash_json([[r.context.tolist(), [c.tolist() for c in r.continuations], r.gold]
                          for r in self.requests])

    @property
    def forward_tokens(self) -> int:
        return sum(r.n_tokens for r in self.requests)


@dataclass(frozen=True, eq=False)
class BenchUnit:
    """One model over one prompt set: outcomes, and per-prompt fidelity from the same passes.
    ``ref`` is the reference's unit (None: this *is* the reference, which stores its
    gold-sequence rows for the others)."""

    model: ModelRef
    ps: PromptSet
    ref: BenchUnit | None = None
    batch_size: int = 8

    @property
    def stage(self) -> str:
        return "reference" if self.ref is None else "bench"

    @functools.cached_property
    def hash(self) -> str:
        return hash_json({"v": UNIT_VERSION, "unit": "bench", "model": self.model.key,
                          "benchmark": self.ps.benchmark, "prompts": self.ps.set_hash,
                          "tokens": self.ps.tokens_hash,
                          "reference": None if self.ref is None else self.ref.hash})

    @property
    def part(self) -> str:
        return f"{self.ps.benchmark}@{self.model.id}"

    @property
    def store_path(self) -> str:
        """The reference's prompt store, relative to the workspace."""
        unit = self if self.ref is None else self.ref
        return f"arrays/prompts/{unit.ps.benchmark}/{unit.hash[:16]}"

    @property
    def forward_tokens(self) -> int:
        return self.ps.forward_tokens

    def done(self, ws: Workspace) -> bool:
        if self.ps.outcomes and not ws.has_part("outcomes", self.part, self.hash):
            return False
        if self.ref is None:
            return (ws.path / self.store_path / "index.json").is_file()
        return ws.has_part("prompt_fidelity", self.part, self.hash)


Unit = ReferenceUnit | FidelityUnit | BenchUnit
