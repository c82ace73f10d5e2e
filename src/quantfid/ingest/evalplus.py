"""evalplus ``eval_results.json`` -> Outcomes for ``<dataset>`` (base) and ``<dataset>+`` (plus).

Formats (as written by ``evalplus.evaluate``):

- v0.2.1 and later: ``{"date", "hash", "eval": {task_id: [{"task_id", "solution",
  "base_status", "plus_status", "base_fail_tests", "plus_fail_tests"}, ...]}}``;
  statuses ``"pass"`` / ``"fail"`` / ``"timeout"`` (``plus_status`` null with --base-only).
- v0.1.x - v0.2.0: ``{"date", "hash", "eval": {task_id: {"nfiles", "base": [[status,
  details], ...], "plus": [...] or []}}}``; statuses ``"success"`` / ``"failed"`` /
  ``"timed out"``. (v0.1.0 wrote ``"files"`` instead of ``"nfiles"``.)

A sample passes plus when it passes base **and** plus (evalplus's own rule). Per task:
``score`` = fraction of samples passing, ``samples`` = their number, ``passed = score >=
pass_threshold``. The dataset is named from the task ids (``HumanEval/*`` -> humaneval,
``Mbpp/*`` -> mbpp) unless ``--benchmark`` names it; ``hash`` (evalplus's hash of its
dataset file) is kept and compared across models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quantfid.errors import FormatError
from quantfid.ingest.common import (
    DEFAULT_PASS_THRESHOLD,
    IngestResult,
    find_files,
    passed_from_score,
    read_json,
)
from quantfid.records import Outcome

SOURCE = "evalplus"
_PASS = {"pass", "success"}
_KNOWN = _PASS | {"fail", "failed", "timeout", "timed out"}
_DATASETS = {"humaneval": "humaneval", "mbpp": "mbpp"}


def _dataset(task_ids: list[str], path: Path) -> str:
    prefixes = {t.split("/", 1)[0].lower() for t in task_ids}
    if len(prefixes) == 1:
        p = prefixes.pop()
        return _DATASETS.get(p, p)
    raise FormatError(f"{path}: task ids from several datasets ({', '.join(sorted(prefixes))}); "
                      "name the benchmark with --benchmark")


def _status(value: Any, where: str) -> bool | None:
    """True / False for a known status, None for a missing one (null: not run)."""
    if isinstance(value, list | tuple):  # old format: [status, details]
        value = value[0] if value else None
    if value is None:
        return None
    if not isinstance(value, str) or value not in _KNOWN:
        raise FormatError(f"{where}: unknown evalplus status {value!r}")
    return value in _PASS


def _samples(task_id: str, entry: Any, where: str) -> list[tuple[bool, bool | None]]:
    """(base passed, plus passed or None) per sample."""
    if isinstance(entry, list):  # v0.2.1+
        out = []
        for i, s in enumerate(entry):
            w = f"{where}[{i}]"
            if not isinstance(s, dict) or "base_status" not in s:
                raise FormatError(f"{w}: expected an object with base_status")
            base = _status(s["base_status"], f"{w}.base_status")
            plus = _status(s.get("plus_status"), f"{w}.plus_status")
            if base is None:
                raise FormatError(f"{w}.base_status: null")
            out.append((base, None if plus is None else (base and plus)))
        return out
    if isinstance(entry, dict) and "base" in entry:  # v0.1.x - v0.2.0
        bases = entry["base"] or []
        pluses = entry.get("plus") or []
        if not isinstance(bases, list) or not isinstance(pluses, list):
            raise FormatError(f"{where}: 'base' and 'plus' must be lists of results")
        if pluses and len(pluses) != len(bases):
            raise FormatError(f"{where}: {len(bases)} base results but {len(pluses)} plus results")
        out = []
        for i, b in enumerate(bases):
            base = _status(b, f"{where}.base[{i}]")
            if base is None:
                raise FormatError(f"{where}.base[{i}]: null status")
            plus = _status(pluses[i], f"{where}.plus[{i}]") if pluses else None
            out.append((base, None if plus is None else (base and plus)))
        return out
    raise FormatError(f"{where}: not an evalplus result for {task_id}")


def read(paths: list[Path], model: str, *, benchmark: str | None = None,
         pass_threshold: float = DEFAULT_PASS_THRESHOLD) -> IngestResult:
    """Read evalplus eval_results.json files for ``model`` (the workspace model id)."""
    res = IngestResult()
    for path in find_files(paths, "*eval_results.json", "evalplus eval_results.json"):
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("eval"), dict) or not data["eval"]:
            raise FormatError(f"{path}: expected an evalplus eval_results.json (an object "
                              "with a non-empty 'eval')")
        ev: dict[str, Any] = data["eval"]
        base_name = benchmark or _dataset(list(ev), path)
        per_task = {t: _samples(t, e, f"{path}: eval[{t!r}]") for t, e in ev.items()}
        has_plus = any(p is not None for s in per_task.values() for _, p in s)
        names = [(base_name, 0)] + ([(base_name + "+", 1)] if has_plus else [])
        for bench, _ in names:
            if bench in res.benchmarks:
                raise FormatError(f"{path}: a second file for benchmark {bench!r} "
                                  f"({res.files[bench][0]}); give one per benchmark")
            res.benchmarks[bench] = {"source": SOURCE, "metric": "pass@1",
                                     "dataset_hash": data.get("hash"), "date": data.get("date"),
                                     "file": path.name, "n": len(ev)}
            res.files[bench] = [path]
        for task_id, samples in per_task.items():
            if not samples:
                raise FormatError(f"{path}: eval[{task_id!r}] has no samples")
            for bench, k in names:
                vals = [s[k] for s in samples]
                if any(v is None for v in vals):
                    raise FormatError(f"{path}: eval[{task_id!r}]: some samples lack a plus "
                                      "status while others have one")
                score = sum(bool(v) for v in vals) / len(vals)
                res.outcomes.append(Outcome(
                    model=model, benchmark=bench, prompt_id=task_id,
                    passed=passed_from_score(score, pass_threshold), score=score,
                    samples=len(vals), source=SOURCE, source_version=None, prompt_hash=None))
    return res
