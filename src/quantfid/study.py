"""``quantfid study``: one command from a reference model to the report.

The study is an orchestrator over the units every command runs (:mod:`quantfid.units`):

1. ``setup``: load the reference, resolve every quant's identity (recipes of the reference,
   ``[[models]]`` files, directories, hub ids, server URLs), cut the corpora into windows and
   encode the benchmark prompts with the reference's tokenizer; plan the units; print the plan
   and an ETA.
2. the executor (``local`` or ``ray``) runs the units not yet done: the reference's stores and
   benchmarks, then per quant its fidelity and benchmark units; each unit's result is committed
   to the workspace as it finishes.
3. ``ingest`` (``[[ingest]]`` entries), ``analysis`` (``quantfid.analysis.run_all`` over the
   configured cohort) and ``report`` (``quantfid.report``).

Resumable: units are keyed by the hash of their inputs (:mod:`quantfid.units.defs`), so a
re-run, or ``quantfid measure`` / ``bench`` into the same workspace, skips what is done; a
changed input (dtype, backend, numerics, windows, prompts, ...) redoes exactly its units.
Nothing another command added is deleted: the analysis selects the configured cohort.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from quantfid import atomic
from quantfid.config import StudyConfig
from quantfid.errors import QuantfidError
from quantfid.executors.log import RunLog, Timings
from quantfid.models import ModelRef, parse_spec
from quantfid.pool import ModelPool
from quantfid.store.workspace import Workspace
from quantfid.units import Unit
from quantfid.units.plan import Settings, corpus_windows, plan_units, task_prompt_set

FIDELITY_N_BOOT = 1000
ANALYSIS_FILE = "analysis.json"


@dataclass
class StudyResult:
    workspace: Path
    analysis: dict[str, Any]
    verdict: Any
    timings: dict[str, float]
    units_run: int
    units_skipped: int


@dataclass
class Plan:
    """The study's inputs, resolved: models, windows, prompt sets and every unit."""

    reference: ModelRef
    quants: list[ModelRef]
    corpora: list[Any]
    prompt_sets: list[Any]
    units: list[Unit]

    def describe(self) -> str:
        n_models = len(self.quants) + 1
        lines = [f"plan: reference {self.reference.id} + {len(self.quants)} quants",
                 "  quants: " + ", ".join(f"{q.id} ({q.identity.backend}/{q.identity.numerics})"
                                          for q in self.quants)]
        for c in self.corpora:
            lines.append(f"  corpus {c.corpus} ctx {c.ctx}: {len(c.windows)} window(s), "
                         f"{c.windows.n_tokens} scored / {c.forward_tokens} forward tokens per model")
        for p in self.prompt_sets:
            lines.append(f"  benchmark {p.benchmark}: {len(p.requests)} prompts, "
                         f"{p.forward_tokens} forward tokens per model")
        m = sum(c.forward_tokens for c in self.corpora)
        b = sum(p.forward_tokens for p in self.prompt_sets)
        lines.append(f"  tokens per model: measure {m}, bench {b}; all {n_models} models: "
                     f"{n_models * (m + b)}")
        return "\n".join(lines)


class Study:
    """Runs one configuration into one workspace (see the module docstring)."""

    def __init__(self, cfg: StudyConfig, out: str | Path, log: IO[str] | None = None,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.log = log or sys.stderr
        self.progress = progress
        self.t = Timings()

    def say(self, msg: str) -> None:
        print(msg, file=self.log, flush=True)

    # -- setup ----------------------------------------------------------------------------------
    def _pool(self) -> ModelPool:
        r = self.cfg.reference
        spec = parse_spec(r.model, role="reference", dtype=r.dtype, device=r.device)
        return ModelPool(spec, progress=False)

    def _quant_specs(self) -> list[Any]:
        r = self.cfg.reference
        specs = [parse_spec(name, dtype=r.dtype, device=r.device, numerics=self.cfg.numerics)
                 for name in self.cfg.recipes]
        n_ctx = max(self.cfg.contexts)  # runtimes that size their context up front (llama.cpp)
        for e in self.cfg.models:
            opts = {"n_ctx": n_ctx, **e.options}
            specs.append(parse_spec(e.spec, name=e.name, backend=e.backend,
                                    dtype=e.dtype or r.dtype, device=r.device,
                                    numerics=e.numerics or self.cfg.numerics, **opts))
        ids = [s.id for s in specs]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise QuantfidError(f"two quants share the id(s) {dup}; give [[models]] a distinct name")
        return specs

    def plan(self, pool: ModelPool) -> Plan:
        quants = [pool.ref_of(s) for s in self._quant_specs()]
        if any(q.identity.numerics == "ggml-cpu" for q in quants):
            pool.set_reference_numerics("ggml-cpu")
        ref = pool.ref_ref()
        backend = pool.reference()
        if any(q.id == ref.id for q in quants):
            raise QuantfidError(f"a quant is named like the reference ({ref.id!r})")
        corpora = [cw for c in self.cfg.corpora for cw in corpus_windows(
            backend, c, self.cfg.contexts, self.cfg.chunks)]
        psets = [task_prompt_set(backend, b.task, limit=b.limit) for b in self.cfg.benchmarks]
        settings = Settings(n_boot=FIDELITY_N_BOOT, seed=self.cfg.analysis.seed)
        noise = pool.noise_ref() if self.cfg.noise_floor and ref.spec.backend == "hf" else None
        return Plan(ref, quants, corpora, psets,
                    plan_units(ref, quants, corpora, psets, settings, noise))

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> StudyResult:
        from quantfid.executors import get_executor

        ws = Workspace(self.out)
        with self.t.stage("setup"):
            pool = self._pool()
            plan = self.plan(pool)
            selection = self.selection(plan)
            atomic.write_json(ws.path / "study-config.json",
                              {**self.cfg.to_json(), "selection": selection})
            self.say(plan.describe())
            todo = [u for u in plan.units if not u.done(ws)]
            self._register_done(ws, pool, plan, todo)
            self._print_eta(todo, pool)
        x = self.cfg.executor
        executor = get_executor(x.kind, **({} if x.kind == "local" else {
            "address": x.address, "num_cpus": x.num_cpus, "num_gpus": x.num_gpus,
            "memory": x.memory}))
        log = RunLog(todo, progress=self.progress, log=self.log, timings=self.t)
        try:
            executor.run(todo, pool, ws, log)
        finally:
            log.close()
        with self.t.stage("ingest"):
            self._ingest(ws)
        with self.t.stage("analysis"):
            analysis = self._analyse(ws, selection)
        return self._report(ws, analysis, len(todo), len(plan.units) - len(todo))

    def _register_done(self, ws: Workspace, pool: ModelPool, plan: Plan, todo: list[Unit]) -> None:
        """Models whose units are all done but whose record is missing (a run killed between
        its parts and its manifest write) are registered again: their data is there."""
        known = ws.manifest["models"]
        pending = {u.model.id for u in todo}
        missing = [m for m in (plan.reference, *plan.quants)
                   if m.id not in known and m.id not in pending]
        if missing:
            ws.commit([], [pool.record(m) for m in missing])

    def _print_eta(self, todo: list[Unit], pool: ModelPool) -> None:
        from quantfid.executors.eta import estimate

        est = estimate(todo, pool)
        self.say(f"to do: {len(todo)} unit(s), ~{est.tokens} forward tokens at ~{est.tokens_per_s:.0f} "
                 f"tokens/s: ETA ~{est.seconds / 60:.1f} min")

    def _ingest(self, ws: Workspace) -> None:
        """Outcome files of other tools named in the config (``[[ingest]]``)."""
        if not self.cfg.ingest:
            return
        from quantfid.ingest import ingest

        allowed = {"benchmarks", "filter_name", "pass_threshold", "intersect", "mapping"}
        for src in self.cfg.ingest:
            extra = set(src.options) - allowed
            if extra:
                raise QuantfidError(f"[[ingest]] {src.path}: unknown option(s) {sorted(extra)}; "
                                    f"allowed: {sorted(allowed)}")
            ingest(ws, src.format, [Path(src.path)], src.model, reference=src.reference,
                   **src.options)

    def selection(self, plan: Plan) -> dict[str, Any]:
        """The configured cohort (its quants; the reference is always the workspace's), as
        ``quantfid.analysis.selection.Selection.of`` takes it: what the analysis (and
        ``quantfid report``) reads of a workspace that may hold more."""
        models = [*(q.id for q in plan.quants),
                  *(src.model for src in self.cfg.ingest if not src.reference)]
        benchmarks = None if self.cfg.ingest else sorted(
            {n for p in plan.prompt_sets for n in (p.benchmark, f"{p.benchmark}:acc_norm")})
        variants = sorted({(c.corpus, c.ctx) for c in plan.corpora})
        return {"models": sorted(set(models)), "variants": [list(v) for v in variants],
                "benchmarks": benchmarks}

    def _analyse(self, ws: Workspace, selection: dict[str, Any]) -> dict[str, Any]:
        from quantfid.analysis.run import run_all
        from quantfid.analysis.selection import Selection
        from quantfid.report.build import clean

        a = self.cfg.analysis
        sel = Selection.of(models=selection["models"],
                           variants=[tuple(v) for v in selection["variants"]],
                           benchmarks=selection["benchmarks"])
        res = run_all(ws, k=a.k or None, band=a.band, n_boot=a.n_boot, resolution=a.resolution,
                      rng=np.random.default_rng(a.seed), select=sel).to_json()
        atomic.write_json(ws.path / ANALYSIS_FILE, clean(res))
        return res

    def _report(self, ws: Workspace, analysis: dict[str, Any], run: int,
                skipped: int) -> StudyResult:
        from quantfid.report import provenance
        from quantfid.report.build import write_report

        with self.t.stage("report"):
            seed = self.cfg.analysis.seed
            prov = provenance.from_workspace(
                ws, seeds={"analysis": seed, "fidelity_bootstrap": seed},
                timings=dict(self.t.seconds), config=self.cfg.to_json())
            prov["units"] = {"run": run, "skipped": skipped}
            prov["cpu_s"] = dict(self.t.cpu)
            files = write_report(self.out, analysis, prov)
        # the report's own time is known only now: add it to summary.json's provenance
        summary = json.loads(files.summary.read_text())
        summary["provenance"]["timings_s"] = dict(self.t.seconds)
        summary["provenance"]["cpu_s"] = dict(self.t.cpu)
        atomic.write_json(files.summary, summary)
        return StudyResult(self.out, analysis, files.verdict, dict(self.t.seconds), run, skipped)


def run_study(cfg: StudyConfig, out: str | Path, log: IO[str] | None = None,
              progress: bool | None = None) -> StudyResult:
    """Run ``cfg`` into the workspace ``out`` (created or resumed); see the module docstring."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Study(cfg, out, log=log, progress=progress).run()
