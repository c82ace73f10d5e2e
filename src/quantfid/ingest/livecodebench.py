"""LiveCodeBench ``*_eval_all.json`` -> Outcomes and prompt texts.

LiveCodeBench's runner writes ``output/<model>/<scenario>_<n>_<temperature>[_cot]_eval_all.json``:
a JSON array with one object per problem holding the problem fields, the model's
``output_list`` and extracted ``code_list`` (``pred_list`` for the execution and
test-output scenarios), ``graded_list`` (one bool per sample) and ``pass@1`` =
``graded_list.count(True) / len(graded_list)``: a **fraction in [0, 1]** per problem (only
the aggregate in ``*_eval.json`` is in percent).

Prompt ids: ``question_id`` (code generation, self-repair), ``id`` (code execution),
``<question_id>/<test_id>`` (test output prediction). Benchmarks: ``livecodebench`` for
code generation, ``livecodebench-<scenario>`` for the others (or ``--benchmark``).
``score`` = pass@1, ``samples`` = len(graded_list), ``passed = pass@1 >= pass_threshold``.
``prompt_hash`` is quantfid's sha256 of ``question_content`` (LiveCodeBench stores none).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from quantfid.errors import FormatError
from quantfid.ingest.common import (
    DEFAULT_PASS_THRESHOLD,
    IngestResult,
    as_finite,
    find_files,
    passed_from_score,
    read_json,
)
from quantfid.ingest.prompts import PromptText
from quantfid.records import Outcome

SOURCE = "livecodebench"
SCENARIOS = ("codegeneration", "selfrepair", "testoutputprediction", "codeexecution")
_NAME_RE = re.compile(r"^(?:Scenario\.)?(?P<scenario>" + "|".join(SCENARIOS) +
                      r")_(?P<n>\d+)_(?P<temp>[0-9.]+)(?P<cot>_cot)?_eval_all\.json$")


def benchmark_name(scenario: str) -> str:
    return SOURCE if scenario == "codegeneration" else f"{SOURCE}-{scenario}"


def _scenario(path: Path, entries: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    m = _NAME_RE.match(path.name)
    if m:
        try:
            run = {"n_samples": int(m["n"]), "temperature": float(m["temp"]),
                   "cot": bool(m["cot"])}
        except ValueError:  # e.g. a temperature "0.2.1": the name is not LiveCodeBench's
            run = {}
        return m["scenario"], run
    first = entries[0]
    if "test_id" in first:
        return "testoutputprediction", {}
    if "pred_list" in first and "id" in first:
        return "codeexecution", {}
    return "codegeneration", {}


def _prompt_id(scenario: str, e: dict[str, Any], where: str) -> str:
    try:
        if scenario == "codeexecution":
            return str(e["id"])
        if scenario == "testoutputprediction":
            return f"{e['question_id']}/{e['test_id']}"
        return str(e["question_id"])
    except KeyError as k:
        raise FormatError(f"{where}: entry has no {k.args[0]!r}") from None


def read(paths: list[Path], model: str, *, benchmark: str | None = None,
         pass_threshold: float = DEFAULT_PASS_THRESHOLD) -> IngestResult:
    """Read LiveCodeBench eval_all files for ``model`` (the workspace model id)."""
    res = IngestResult()
    for path in find_files(paths, "*_eval_all.json", "LiveCodeBench *_eval_all.json files"):
        data = read_json(path)
        if not isinstance(data, list) or not data:
            raise FormatError(f"{path}: expected a non-empty JSON array of problems "
                              "(LiveCodeBench *_eval_all.json)")
        for i, e in enumerate(data):
            if not isinstance(e, dict):
                raise FormatError(f"{path}[{i}]: expected a JSON object")
        scenario, run = _scenario(path, data)
        bench = benchmark or benchmark_name(scenario)
        if bench in res.benchmarks:
            raise FormatError(f"{path}: a second file for benchmark {bench!r} "
                              f"({res.files[bench][0]}); give one per benchmark or --benchmark")
        seen: dict[str, int] = {}
        for i, e in enumerate(data):
            where = f"{path}[{i}]"
            pid = _prompt_id(scenario, e, where)
            if pid in seen:
                raise FormatError(f"{where}: problem {pid} appears twice (first at [{seen[pid]}])")
            seen[pid] = i
            graded = e.get("graded_list")
            if not isinstance(graded, list) or not graded:
                raise FormatError(f"{where}: problem {pid} has no graded_list")
            if not all(isinstance(g, bool | int) and g in (0, 1) for g in graded):
                raise FormatError(f"{where}: graded_list of {pid} must hold true/false")
            frac = sum(bool(g) for g in graded) / len(graded)
            if "pass@1" in e:
                score = as_finite(e["pass@1"], f"{where}: pass@1")
                if abs(score - frac) > 1e-9:
                    raise FormatError(f"{where}: pass@1 {score} of {pid} disagrees with "
                                      f"graded_list ({sum(bool(g) for g in graded)}/{len(graded)});"
                                      " LiveCodeBench stores pass@1 as a fraction")
            else:
                score = frac
            content = e.get("question_content")
            phash = (hashlib.sha256(content.encode("utf-8")).hexdigest()
                     if isinstance(content, str) else None)
            res.outcomes.append(Outcome(
                model=model, benchmark=bench, prompt_id=pid,
                passed=passed_from_score(score, pass_threshold), score=score,
                samples=len(graded), source=SOURCE, source_version=None, prompt_hash=phash))
            if isinstance(content, str):
                codes = e.get("code_list", e.get("pred_list"))
                codes = codes if isinstance(codes, list) else []
                res.prompts.append(PromptText(
                    bench, pid, content,
                    responses=tuple(c for c in codes if isinstance(c, str))))
        res.benchmarks[bench] = {"source": SOURCE, "scenario": scenario, "metric": "pass@1",
                                 "file": path.name, "n": len(data), **run}
        res.files[bench] = [path]
    return res
