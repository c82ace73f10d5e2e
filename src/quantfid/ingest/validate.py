"""Prompt-set checks between the models of one cohort.

Every model of a cohort must have been scored on the same prompts of a benchmark: the
same prompt ids, the same prompt hashes (where the source gives them), the same filter /
n-shot / dataset. A difference is a :class:`~quantfid.errors.MismatchError` naming what
differs. With ``intersect=True`` the prompts not shared (or whose hashes differ) are left
out for every model: nothing is deleted, the kept prompt ids are returned for the caller
to record in the manifest (``intersections``), and readers apply them. A benchmark with
a recorded intersection is compared on its kept prompts only.

The new model is compared with the workspace reference when the reference has the
benchmark, else with the first other model that has it (earlier models were checked
against each other when they were ingested).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from quantfid.errors import MismatchError
from quantfid.records import Outcome

# Benchmark facts that must agree between models (intersection cannot repair them).
INFO_KEYS = ("filter", "n_shot", "dataset_hash")
_SHOW = 5


def _ids(xs: Iterable[str]) -> str:
    xs = sorted(xs, key=_natural)
    more = f", ... ({len(xs) - _SHOW} more)" if len(xs) > _SHOW else ""
    return ", ".join(xs[:_SHOW]) + more


def _natural(s: str) -> tuple[int, int | str]:
    return (0, int(s)) if s.isdigit() else (1, s)


@dataclass(frozen=True)
class SetDiff:
    """How ``model``'s prompt set of ``benchmark`` differs from ``other``'s."""

    model: str
    other: str
    other_label: str
    benchmark: str
    n_model: int
    n_other: int
    missing: tuple[str, ...] = ()      # in other, not in model
    extra: tuple[str, ...] = ()        # in model, not in other
    hash_differs: tuple[str, ...] = ()
    info: tuple[str, ...] = ()         # e.g. "filter 'a' vs 'b'"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.hash_differs or self.info)

    @property
    def fixable(self) -> bool:
        """True when intersecting prompt ids repairs every difference."""
        return not self.info

    def dropped(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.missing) | set(self.extra) | set(self.hash_differs),
                            key=_natural))

    def message(self) -> str:
        parts = []
        head = f"model {self.model}: benchmark {self.benchmark}"
        if self.missing or self.extra:
            s = (f"{head} has {self.n_model} prompts, {self.other_label} {self.other} has "
                 f"{self.n_other}")
            if self.missing:
                s += f"; {len(self.missing)} missing: {_ids(self.missing)}"
            if self.extra:
                s += f"; {len(self.extra)} not in {self.other}: {_ids(self.extra)}"
            parts.append(s)
        if self.hash_differs:
            parts.append(f"{head}: prompt_hash differs from {self.other_label} {self.other} on "
                         f"{len(self.hash_differs)} prompt(s): doc {_ids(self.hash_differs)}")
        for d in self.info:
            parts.append(f"{head}: {d} ({self.other_label} {self.other})")
        return "\n".join(parts)


def diff_sets(model: str, other: str, benchmark: str, mine: dict[str, str | None],
              theirs: dict[str, str | None], my_info: dict[str, Any] | None = None,
              their_info: dict[str, Any] | None = None,
              other_label: str = "model") -> SetDiff:
    """Compare two prompt sets (prompt id -> prompt hash or None)."""
    missing = tuple(k for k in theirs if k not in mine)
    extra = tuple(k for k in mine if k not in theirs)
    hashes = tuple(k for k, h in mine.items()
                   if k in theirs and h is not None and theirs[k] is not None and h != theirs[k])
    info = []
    if my_info and their_info:
        for key in INFO_KEYS:
            a, b = my_info.get(key), their_info.get(key)
            if a is not None and b is not None and a != b:
                info.append(f"{key} {a!r}, the other has {b!r}")
    return SetDiff(model, other, other_label, benchmark, len(mine), len(theirs),
                   missing, extra, hashes, tuple(info))


@dataclass
class StoredOutcomes:
    """The workspace's outcomes part by part (to compare prompt sets).

    ``parts``: part name -> (unit hash, rows); ``index``: benchmark -> part names holding it.
    """

    parts: dict[str, tuple[str | None, list[dict[str, Any]]]] = field(default_factory=dict)
    index: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, ws: Any) -> StoredOutcomes:
        """Every stored outcomes part, as written (intersections not applied)."""
        out = cls()
        for p in ws.parts("outcomes"):
            t = ws.read_part(p)
            meta = t.schema.metadata or {}
            name = meta.get(b"part", p.stem.encode()).decode("utf-8", "replace")
            h = meta.get(b"unit_hash")
            out.put(name, h.decode("utf-8", "replace") if h else None, t.to_pylist())
        return out

    def put(self, part: str, unit_hash: str | None, rows: list[dict[str, Any]]) -> None:
        """Record a part (replacing a stored one of that name)."""
        for names in self.index.values():
            names.discard(part)
        self.parts[part] = (unit_hash, rows)
        for r in rows:
            self.index.setdefault(r.get("benchmark"), set()).add(part)  # type: ignore[arg-type]

    def prompt_sets(self, benchmark: str, skip_part: str | None = None
                    ) -> dict[str, dict[str, str | None]]:
        """model -> {prompt id: hash} for ``benchmark`` (parts other than ``skip_part``)."""
        sets: dict[str, dict[str, str | None]] = {}
        for name in sorted(self.index.get(benchmark, ())):
            if name == skip_part:
                continue
            for r in self.parts[name][1]:
                if r.get("benchmark") == benchmark:
                    sets.setdefault(r["model"], {})[str(r["prompt_id"])] = r.get("prompt_hash")
        return sets

    def other_parts_with(self, model: str, benchmark: str, part: str) -> list[str]:
        return sorted(name for name in self.index.get(benchmark, ()) if name != part and any(
            r.get("model") == model and r.get("benchmark") == benchmark
            for r in self.parts[name][1]))


@dataclass(frozen=True)
class CheckResult:
    """The outcomes to store for one benchmark (all of the new model's) and, when
    ``--intersect`` changed the cohort's prompt set, the prompt ids now kept."""

    outcomes: list[Outcome]
    diff: SetDiff | None
    keep: tuple[str, ...] | None = None
    dropped_new: tuple[str, ...] = ()
    dropped_others: dict[str, list[str]] = field(default_factory=dict)


def check_benchmark(stored: StoredOutcomes, model: str, benchmark: str,
                    outcomes: list[Outcome], info: dict[str, Any], part: str,
                    manifest: dict[str, Any], intersect: bool = False) -> CheckResult:
    """Check ``model``'s new outcomes of ``benchmark`` against the cohort; see module doc.

    Raises MismatchError when the sets differ (and ``intersect`` is false or cannot fix it).
    ``manifest``: the workspace manifest as read once by the caller.
    """
    dup = stored.other_parts_with(model, benchmark, part)
    if dup:
        raise MismatchError(f"model {model}: benchmark {benchmark} already has outcomes from "
                            f"{', '.join(dup)}; one source per model and benchmark")
    sets = stored.prompt_sets(benchmark, skip_part=part)
    sets.pop(model, None)
    kept = (manifest.get("intersections") or {}).get(benchmark)
    if kept is not None:
        ids = set(kept["prompts"])
        sets = {m: {k: h for k, h in s.items() if k in ids} for m, s in sets.items()}
    if not sets:
        return CheckResult(outcomes, None)
    ref = manifest.get("reference")
    other = ref if ref in sets else next(iter(sets))
    label = "reference" if other == ref else "model"
    mine = {o.prompt_id: o.prompt_hash for o in outcomes}
    their_info = ((manifest.get("ingest") or {}).get(f"{other}::{benchmark}") or {}).get("info")
    diff = diff_sets(model, other, benchmark, mine, sets[other], info, their_info, label)
    if diff.ok:
        return CheckResult(outcomes, diff)
    if not intersect:
        raise MismatchError(diff.message() + "\n(use --intersect to keep only the shared prompts)")
    if not diff.fixable:
        raise MismatchError(diff.message() + "\n(--intersect cannot repair this: it differs for "
                            "every prompt)")
    drop = set(diff.dropped())
    keep = {k for k in mine if k not in drop}
    if not keep:
        raise MismatchError(diff.message() + "\n(no prompts in common)")
    others = {m: sorted((k for k in s if k not in keep), key=_natural) for m, s in sets.items()}
    dropped_new = tuple(sorted((k for k in mine if k not in keep), key=_natural))
    return CheckResult(outcomes, diff, tuple(sorted(keep, key=_natural)), dropped_new,
                       {m: v for m, v in sorted(others.items()) if v})
