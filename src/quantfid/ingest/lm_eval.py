"""lm-evaluation-harness ``--log_samples`` output -> Outcomes and prompt texts.

Formats read (as written by lm-eval; see docs in ``tests/ingest/fixtures/lm_eval``):

- v0.4.3 and later: ``<out>/<model>/samples_<task>_<date>.jsonl`` (one JSON object per
  line and filter: ``doc_id, doc, target, arguments {"gen_args_N": {"arg_0": context,
  "arg_1": continuation | gen kwargs}}, resps, filtered_resps, doc_hash, prompt_hash,
  target_hash`` and one key per metric, e.g. ``acc, acc_norm, exact_match``) next to
  ``results_<date>.json`` (``results, configs, versions, n-shot, config.model_args``,
  from ~v0.4.8 ``lm_eval_version``). From v0.4.7 each line also has ``filter`` and
  ``metrics``; before that a task with several filters logs every doc once per filter,
  in filter order, and the filter names come from the results file.
- v0.4.0 - v0.4.2: ``<model_args>_<task>.jsonl`` holding one JSON *array* of samples
  (``arguments`` as a list of lists, no hashes, no filter) next to ``results.json``.
  Their ``prompt_hash`` is computed as lm-eval does: sha256 of the first request's context.

Benchmarks: ``<task>`` when the task has one filter (or ``--filter`` picks one),
``<task>/<filter>`` for each filter otherwise; ``acc_norm`` becomes ``<name>:acc_norm``.
``passed`` comes from the first of ``acc``, ``exact_match``, ``pass@1``, ``pass_at_1``:
the per-prompt value (0/1, or a fraction over repeats for pass@1; anything but a finite
number in [0, 1] is refused, naming the file and line) is ``score`` and
``passed = score >= pass_threshold``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantfid.errors import FormatError
from quantfid.ingest.common import (
    DEFAULT_PASS_THRESHOLD,
    IngestResult,
    as_fraction,
    iter_jsonl,
    obj,
    passed_from_score,
    read_json,
)
from quantfid.ingest.prompts import PromptText
from quantfid.records import Outcome

SOURCE = "lm-eval"
PASS_METRICS = ("acc", "exact_match", "pass@1", "pass_at_1")
NORM_METRIC = "acc_norm"
_DATE = r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?"
_SAMPLES_RE = re.compile(rf"^samples_(?P<task>.+)_(?P<date>{_DATE})\.jsonl$")
_RESULTS_RE = re.compile(rf"^results_(?P<date>{_DATE})\.json$")
_FIXED_KEYS = {"doc_id", "doc", "target", "arguments", "resps", "filtered_resps", "filter",
               "metrics", "doc_hash", "prompt_hash", "target_hash"}


@dataclass(frozen=True)
class SamplesFile:
    """One task's samples file. ``date`` is lm-eval's date id (None for legacy files)."""

    path: Path
    task: str
    date: str | None
    legacy: bool


# ---- finding files ------------------------------------------------------------------------
def _is_json_array(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(256).lstrip()
    return head.startswith(b"[")


def _legacy_task(path: Path) -> str:
    """The task of a v0.4.0-0.4.2 file ``<model_args>_<task>.jsonl``, from ``results.json``."""
    res = path.parent / "results.json"
    if not res.exists():
        raise FormatError(f"{path}: an lm-eval v0.4.0-0.4.2 samples file names its task only "
                          f"together with results.json, which is not next to it")
    data = read_json(res)
    if not isinstance(data, dict):
        raise FormatError(f"{res}: expected a JSON object (lm-eval results)")
    names = list(obj(data.get("configs"))) + list(obj(data.get("results")))
    hits = [t for t in names if path.stem.endswith("_" + t) or path.stem == t]
    if not hits:
        raise FormatError(f"{path}: no task of {res} ({', '.join(sorted(set(names)))}) "
                          f"matches this file name")
    return max(hits, key=len)


def _classify(path: Path) -> SamplesFile | None:
    m = _SAMPLES_RE.match(path.name)
    if m:
        return SamplesFile(path, m["task"], m["date"], legacy=False)
    if path.suffix in (".jsonl", ".json") and not _RESULTS_RE.match(path.name) \
            and path.name != "results.json" and _is_json_array(path):
        return SamplesFile(path, _legacy_task(path), None, legacy=True)
    return None


def find_samples(paths: list[Path], tasks: set[str] | None = None) -> list[SamplesFile]:
    """The samples files to read: given files as they are; in a directory (searched
    recursively) the newest ``samples_<task>_<date>.jsonl`` per task (or legacy files
    next to a ``results.json``). ``tasks`` keeps only those tasks."""
    found: dict[str, list[SamplesFile]] = {}
    for p in paths:
        if p.is_dir():
            cands = [c for f in sorted(p.rglob("*.jsonl")) if (c := _classify_in_dir(f))]
            if not cands:
                raise FormatError(f"{p}: no lm-eval samples files (samples_<task>_<date>.jsonl) "
                                  "in this directory; run lm-eval with --log_samples")
            dirs = sorted({str(c.path.parent) for c in cands})
            if len(dirs) > 1:
                raise FormatError(f"{p}: lm-eval samples in several directories ({', '.join(dirs)}),"
                                  " probably several models; give the one for this model")
            newest: dict[str, SamplesFile] = {}
            for c in cands:
                cur = newest.get(c.task)
                if cur is None or (c.date or "") > (cur.date or ""):
                    newest[c.task] = c
            for c in newest.values():
                found.setdefault(c.task, []).append(c)
        elif p.is_file():
            c = _classify(p)
            if c is None:
                raise FormatError(f"{p}: not an lm-eval samples file (expected "
                                  "samples_<task>_<date>.jsonl or a v0.4.0-0.4.2 JSON array)")
            found.setdefault(c.task, []).append(c)
        else:
            raise FormatError(f"{p}: no such file or directory")
    out = []
    for task, files in sorted(found.items()):
        if tasks is not None and task not in tasks:
            continue
        if len(files) > 1:
            raise FormatError(f"several samples files for task {task!r}: "
                              f"{', '.join(str(f.path) for f in files)}; give one")
        out.append(files[0])
    if tasks is not None:
        missing = tasks - {f.task for f in out}
        if missing:
            raise FormatError(f"no samples for task(s) {', '.join(sorted(missing))} in "
                              f"{', '.join(map(str, paths))} (found: {', '.join(sorted(found))})")
    return out


def _classify_in_dir(path: Path) -> SamplesFile | None:
    if _SAMPLES_RE.match(path.name):
        return _classify(path)
    if (path.parent / "results.json").exists() and _is_json_array(path):
        return _classify(path)
    return None


def find_results(sf: SamplesFile) -> Path | None:
    """The results file of the same run: ``results_<date>.json`` (or ``<stem>_<date>.json``
    when lm-eval's --output_path named a .json file) with the samples' date; else the
    newest ``results_*.json`` beside it that lists the task; else ``results.json``."""
    d = sf.path.parent
    if sf.date is not None:
        same = d / f"results_{sf.date}.json"
        if same.exists():
            return same
        # --output_path ending in .json: results are written as <stem>_<date>.json
        stems = sorted(d.glob(f"*_{sf.date}.json"))
        if len(stems) == 1:
            return stems[0]
        others = sorted((p for p in d.glob("results_*.json") if _RESULTS_RE.match(p.name)),
                        reverse=True)
        for p in others:
            data = read_json(p)
            if not isinstance(data, dict):
                continue
            if sf.task in obj(data.get("configs")) or sf.task in obj(data.get("results")):
                return p
    legacy = d / "results.json"
    return legacy if legacy.exists() else None


# ---- reading samples ----------------------------------------------------------------------
def _read_samples(sf: SamplesFile) -> list[tuple[str, dict[str, Any]]]:
    """(position, sample) pairs; position is ``file:line`` or ``file[entry]``."""
    if sf.legacy:
        data = read_json(sf.path)
        if not isinstance(data, list):
            raise FormatError(f"{sf.path}: expected a JSON array of samples")
        out = []
        for i, s in enumerate(data):
            if not isinstance(s, dict):
                raise FormatError(f"{sf.path}[{i}]: expected a JSON object")
            out.append((f"{sf.path}[{i}]", s))
        return out
    return [(f"{sf.path}:{n}", s) for n, s in iter_jsonl(sf.path)]


def _filter_names(task: str, results: dict[str, Any] | None) -> list[str]:
    """Filter names in lm-eval's order, from the results file (config, then metric keys)."""
    if not results:
        return []
    cfg = obj(obj(results.get("configs")).get(task))
    flist = cfg.get("filter_list")
    names = [f.get("name") for f in flist if isinstance(f, dict)] if isinstance(flist, list) else []
    if names and all(isinstance(n, str) for n in names):
        return names  # type: ignore[return-value]
    seen: list[str] = []
    for key in obj(obj(results.get("results")).get(task)):
        if "," in key and "_stderr" not in key:
            f = key.split(",", 1)[1]
            if f not in seen:
                seen.append(f)
    return seen


def _split_by_filter(sf: SamplesFile, samples: list[tuple[str, dict[str, Any]]],
                     results: dict[str, Any] | None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    by_filter: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    seen: dict[tuple[str, str], str] = {}
    occurrences: dict[str, int] = {}
    names = _filter_names(sf.task, results)
    for where, s in samples:
        if "doc_id" not in s:
            raise FormatError(f"{where}: sample has no doc_id")
        doc = str(s["doc_id"])
        if isinstance(s.get("filter"), str):
            f = s["filter"]
        else:  # before v0.4.7: the k-th time a doc appears is the k-th filter
            k = occurrences.get(doc, 0)
            occurrences[doc] = k + 1
            f = names[k] if k < len(names) else ("none" if k == 0 else f"filter{k}")
        if (doc, f) in seen:
            raise FormatError(f"{where}: doc_id {doc} appears twice for filter {f!r} "
                              f"(first at {seen[(doc, f)]})")
        seen[(doc, f)] = where
        by_filter.setdefault(f, []).append((where, s))
    return by_filter


def _requests(sample: dict[str, Any], where: str) -> list[list[Any]]:
    """The per-request arguments as lists: ``[[context, continuation or gen kwargs], ...]``."""
    args = sample.get("arguments")
    if isinstance(args, dict):  # v0.4.3+: {"gen_args_0": {"arg_0": ..., "arg_1": ...}, ...}
        def index(key: str) -> int:
            try:
                return int(key.rsplit("_", 1)[1])
            except (IndexError, ValueError):
                raise FormatError(f"{where}: unexpected arguments key {key!r}") from None
        out = []
        for k in sorted(args, key=index):
            a = args[k]
            if not isinstance(a, dict):
                raise FormatError(f"{where}: arguments[{k!r}] is not an object")
            out.append([a[j] for j in sorted(a, key=index)])
        return out
    if isinstance(args, list):  # v0.4.0-0.4.2: [[context, continuation], ...]
        return [list(a) if isinstance(a, list | tuple) else [a] for a in args]
    raise FormatError(f"{where}: sample has no arguments")


def _prompt_hash(sample: dict[str, Any], reqs: list[list[Any]]) -> str | None:
    h = sample.get("prompt_hash")
    if isinstance(h, str):
        return h
    if reqs and reqs[0] and isinstance(reqs[0][0], str):  # lm-eval: sha256(context of request 0)
        return hashlib.sha256(reqs[0][0].encode("utf-8")).hexdigest()
    return None


def _flatten_strings(x: Any) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, list | tuple):
        return [s for item in x for s in _flatten_strings(item)]
    return []


def _prompt_text(benchmark: str, sample: dict[str, Any], reqs: list[list[Any]]) -> PromptText | None:
    if not reqs or not reqs[0] or not isinstance(reqs[0][0], str):
        return None
    doc_id = str(sample["doc_id"])
    target = sample.get("target")
    target_s = None if target is None else str(target)
    contexts = [r[0] for r in reqs if r and isinstance(r[0], str)]
    second = [r[1] if len(r) > 1 else None for r in reqs]
    if all(isinstance(c, str) for c in second):  # loglikelihood / multiple choice
        conts = tuple(str(c) for c in second)
        same = all(c == contexts[0] for c in contexts)
        # multiple_input tasks (one continuation, several contexts): the gold index is not
        # logged, and the target names the shared continuation, so it is left unknown
        gold = _gold_index(target_s, conts) if same else None
        if len(conts) == 1 and gold is None:
            gold = 0  # a loglikelihood task scores its one continuation
        return PromptText(benchmark, doc_id, contexts[0], conts, gold, target_s,
                          contexts=() if same else tuple(contexts))
    responses = tuple(_flatten_strings(sample.get("filtered_resps")))
    return PromptText(benchmark, doc_id, contexts[0], (), None, target_s, responses)


def _gold_index(target: str | None, conts: tuple[str, ...]) -> int | None:
    if target is None:
        return None
    t = target.strip()
    if re.fullmatch(r"[0-9]{1,9}", t) and int(t) < len(conts):
        return int(t)
    stripped = [c.strip() for c in conts]
    if len(set(stripped)) < len(stripped):
        return None
    return stripped.index(t) if t and t in stripped else None


def _n_samples(sample: dict[str, Any], metric: str) -> int:
    if metric in ("pass@1", "pass_at_1"):
        resps = sample.get("resps")
        if isinstance(resps, list) and resps and isinstance(resps[0], list) and resps[0]:
            return len(resps[0])
    return 1


def _pick_metric(keys: set[str]) -> str | None:
    for m in PASS_METRICS:
        if m in keys:
            return m
    return None


def _metric_keys(sample: dict[str, Any]) -> set[str]:
    ms = sample.get("metrics")
    if isinstance(ms, list):
        return {m for m in ms if isinstance(m, str)}
    return {k for k in sample if k not in _FIXED_KEYS}


def read(paths: list[Path], model: str, *, tasks: set[str] | None = None,
         filter_name: str | None = None,
         pass_threshold: float = DEFAULT_PASS_THRESHOLD) -> IngestResult:
    """Read lm-eval samples (files or directories) for ``model`` (the workspace model id)."""
    res = IngestResult()
    for sf in find_samples(paths, tasks):
        rpath = find_results(sf)
        results = read_json(rpath) if rpath else None
        if results is not None and not isinstance(results, dict):
            raise FormatError(f"{rpath}: expected a JSON object")
        version = results.get("lm_eval_version") if results else None
        version = version if isinstance(version, str) else None
        samples = _read_samples(sf)
        if not samples:
            raise FormatError(f"{sf.path}: no samples")
        by_filter = _split_by_filter(sf, samples, results)
        filters = list(by_filter)
        if filter_name is not None and len(filters) > 1:
            if filter_name not in by_filter:
                raise FormatError(f"{sf.path}: task {sf.task!r} has no filter {filter_name!r} "
                                  f"(filters: {', '.join(filters)})")
            filters = [filter_name]
        info = _task_info(sf.task, results)
        files = [sf.path] + ([rpath] if rpath else [])
        n_before = len(res.outcomes)
        for f in filters:
            base = sf.task if len(filters) == 1 else f"{sf.task}/{f}"
            _add_filter(res, by_filter[f], model, base, f, version, pass_threshold,
                        {**info, "filter": f, "samples_file": sf.path.name}, files)
        if len(res.outcomes) == n_before:
            res.warnings.append(f"{sf.path}: task {sf.task!r} has no pass/fail metric "
                                f"({' / '.join((*PASS_METRICS, NORM_METRIC))}); skipped")
    if not res.outcomes:
        raise FormatError("no lm-eval outcomes read from " + ", ".join(map(str, paths)) +
                          (": " + "; ".join(res.warnings) if res.warnings else ""))
    return res


def _task_info(task: str, results: dict[str, Any] | None) -> dict[str, Any]:
    if not results:
        return {"task": task}
    cfg = obj(obj(results.get("configs")).get(task))
    n_shot = obj(results.get("n-shot")).get(task, cfg.get("num_fewshot"))
    model_args = obj(results.get("config")).get("model_args")
    return {"task": task, "n_shot": n_shot,
            "task_version": obj(results.get("versions")).get(task),
            "model_args": model_args if isinstance(model_args, str) else json.dumps(model_args),
            "lm_eval_version": results.get("lm_eval_version"),
            "task_hash": obj(results.get("task_hashes")).get(task)}


def _add_filter(res: IngestResult, samples: list[tuple[str, dict[str, Any]]], model: str,
                base: str, filt: str, version: str | None, threshold: float,
                info: dict[str, Any], files: list[Path]) -> None:
    first = samples[0][1]
    metric = _pick_metric(_metric_keys(first))
    names = [] if metric is None else [(metric, base)]
    if NORM_METRIC in first:
        names.append((NORM_METRIC, f"{base}:{NORM_METRIC}"))
    if not names:
        return
    for m, bench in names:
        res.benchmarks[bench] = {**info, "source": SOURCE, "metric": m, "n": len(samples)}
        res.files[bench] = files
    for where, s in samples:
        reqs = _requests(s, where)
        phash = _prompt_hash(s, reqs)
        for m, bench in names:
            if m not in s:
                raise FormatError(f"{where}: sample has no {m!r} (filter {filt!r}); the "
                                  f"first sample of this filter has it")
            score = as_fraction(s[m], f"{where}: {m}")
            res.outcomes.append(Outcome(
                model=model, benchmark=bench, prompt_id=str(s["doc_id"]),
                passed=passed_from_score(score, threshold), score=score,
                samples=_n_samples(s, m), source=SOURCE, source_version=version,
                prompt_hash=phash))
            pt = _prompt_text(bench, s, reqs)
            if pt is not None:
                res.prompts.append(pt)
