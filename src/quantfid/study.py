"""``quantfid study``: one command from a reference model to the report.

Stages (each timed, each with one progress bar on stderr):

1. ``setup``: load the reference once (float32 by default), tokenize the corpora and cut
   their windows, encode the benchmark prompts; print the plan and an ETA.
2. ``reference``: the reference over every window (its log-probs kept in ``W/arrays`` as
   float32 memory-mapped files) and over every benchmark prompt (its outcomes, and its
   gold-sequence log-probs for per-prompt fidelity).
3. per quant: ``quantize`` (a deep copy of the in-memory reference, quantized in place: the
   reference is never reloaded from disk), ``measure`` (fidelity on every corpus x context)
   and ``bench`` (per-prompt outcomes and per-prompt fidelity, from the same forward passes).
4. ``analysis`` (``quantfid.analysis.run_all``) and ``report`` (``quantfid.report``).

Resumable: every unit of work (model x corpus x context, model x benchmark) is one
workspace part keyed by the hash of its inputs (reference hash, the quant's recipe or file
hash, the exact token windows or prompt set, the settings). A re-run skips units whose part
exists with that hash and redoes only those whose inputs changed; a quant whose units are
all done is not even quantized. Parts are written atomically, so Ctrl-C or ``kill -9``
loses at most the unit in progress.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from quantfid import atomic
from quantfid.config import StudyConfig
from quantfid.errors import QuantfidError
from quantfid.hashing import hash_json
from quantfid.progress import bar
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace

STAGES = ("setup", "reference", "quantize", "measure", "bench", "ingest", "analysis", "report")
SCORING = "llamacpp"
FIDELITY_N_BOOT = 1000
BENCH_CHUNK = 16  # prompts scored (and their log-probs held) at a time
ANALYSIS_FILE = "analysis.json"
# Fallback speed when the warm-up cannot be timed (float32, 135M parameters, 2 CPU cores).
CONSERVATIVE_TOKENS_PER_S = 400.0
WARMUP_TOKENS = 128


@dataclass
class Timings:
    """Wall-clock seconds per stage, accumulated; ``cpu`` the process CPU seconds (all
    threads), which tell a busy machine from slow code."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0


@dataclass(frozen=True)
class CorpusWindows:
    name: str
    corpus_hash: str
    ctx: int
    windows: Any  # quantfid.corpus.Windows

    @property
    def key(self) -> str:
        return f"{self.name}@{self.ctx}"

    @property
    def forward_tokens(self) -> int:
        return len(self.windows) * self.ctx


@dataclass(frozen=True)
class TaskPrompts:
    name: str
    prompts: list[Any]  # quantfid.bench.encode.EncodedPrompt
    prompt_set_hash: str
    info: dict[str, Any]

    @property
    def forward_tokens(self) -> int:
        return sum(p.n_tokens for p in self.prompts)


@dataclass(frozen=True)
class QuantSource:
    """A cohort member: a recipe applied to the reference, or a model file/directory."""

    id: str
    kind: str  # "recipe" | "file"
    spec: str
    key_hash: str  # identity before quantization/loading: keys its units


@dataclass(frozen=True)
class Plan:
    reference: str
    quants: list[QuantSource]
    corpora: list[CorpusWindows]
    tasks: list[TaskPrompts]

    @property
    def measure_tokens(self) -> int:
        return sum(c.forward_tokens for c in self.corpora)

    @property
    def bench_tokens(self) -> int:
        return sum(t.forward_tokens for t in self.tasks)

    def describe(self) -> str:
        n_models = len(self.quants) + 1
        lines = [f"plan: reference {self.reference} + {len(self.quants)} quants",
                 "  quants: " + ", ".join(q.id for q in self.quants)]
        for c in self.corpora:
            lines.append(f"  corpus {c.name} ctx {c.ctx}: {len(c.windows)} window(s), "
                         f"{c.windows.n_tokens} scored / {c.forward_tokens} forward tokens per model")
        for t in self.tasks:
            lines.append(f"  benchmark {t.name}: {len(t.prompts)} prompts, "
                         f"{t.forward_tokens} forward tokens per model")
        lines.append(f"  tokens per model: measure {self.measure_tokens}, bench {self.bench_tokens}; "
                     f"all {n_models} models: {n_models * (self.measure_tokens + self.bench_tokens)}")
        return "\n".join(lines)


# ---- units and their hashes --------------------------------------------------------------------

def fidelity_hash(ref_hash: str, q: QuantSource, cw: CorpusWindows) -> str:
    return hash_json({"unit": "fidelity", "reference": ref_hash, "model": q.key_hash,
                      "corpus_hash": cw.corpus_hash, "windows": cw.windows.hash, "ctx": cw.ctx,
                      "scoring": SCORING, "n_boot": FIDELITY_N_BOOT})


def bench_hash(ref_hash: str, model_key: str, t: TaskPrompts) -> str:
    return hash_json({"unit": "bench", "reference": ref_hash, "model": model_key,
                      "prompts": t.prompt_set_hash})


def _part(model: str, key: str) -> str:
    return f"{model}__{key}"


# ---- reference log-prob cache (float32, memory-mapped) ------------------------------------------

class RefLogprobs:
    """The reference's log-probs for one unit, kept as a float32 ``.npy`` in ``W/arrays/ref``.

    The file name is the hash of what produced it (reference, windows or prompts), so a
    stale file is never read for other inputs; written atomically; read memory-mapped.
    """

    def __init__(self, ws: Workspace) -> None:
        self.dir = ws.array_dir("ref")

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            return np.load(p, mmap_mode="r")
        except (ValueError, OSError):
            return None

    def put(self, key: str, arr: np.ndarray) -> np.ndarray:
        with atomic.atomic_open(self.path(key), "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr, dtype=np.float32))
        out = self.get(key)
        assert out is not None
        return out


# ---- the study -----------------------------------------------------------------------------------

@dataclass
class StudyResult:
    workspace: Path
    analysis: dict[str, Any]
    verdict: Any
    timings: dict[str, float]
    units_run: int
    units_skipped: int


class Study:
    """Runs one configuration into one workspace (see the module docstring)."""

    def __init__(self, cfg: StudyConfig, out: str | Path, log: IO[str] | None = None,
                 progress: bool | None = None) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.log = log or sys.stderr
        self.progress_disabled = None if progress is None else not progress
        self.t = Timings()
        self.units_run = 0
        self.units_skipped = 0
        self._work: Any = None  # the working copy the recipes quantize in place

    def say(self, msg: str) -> None:
        print(msg, file=self.log, flush=True)

    # -- setup -----------------------------------------------------------------------------------
    def _load_reference(self) -> Any:
        from quantfid.backends.hf import HFBackend, load_hf

        r = self.cfg.reference
        loaded = load_hf(None if r.model == "embedded" else r.model, dtype=r.dtype, device=r.device,
                         role="reference")
        return HFBackend(loaded)

    def _quant_sources(self, ref_hash: str) -> list[QuantSource]:
        from quantfid.hashing import hash_file
        from quantfid.quantize import get_recipe

        out: list[QuantSource] = []
        for name in self.cfg.recipes:
            rec = get_recipe(name)
            out.append(QuantSource(id=name, kind="recipe", spec=name,
                                   key_hash=hash_json({"recipe": repr(rec), "reference": ref_hash})))
        for f in self.cfg.files:
            p = Path(f.path)
            if not p.exists():
                raise QuantfidError(f"quant file not found: {p}")
            h = hash_file(p) if p.is_file() else hash_json(sorted(
                (str(x.relative_to(p)), x.stat().st_size, x.stat().st_mtime_ns)
                for x in p.rglob("*") if x.is_file()))
            qid = f.name or (p.stem if p.is_file() else p.name)
            out.append(QuantSource(id=qid, kind="file", spec=str(p), key_hash=h))
        ids = [q.id for q in out]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise QuantfidError(f"two quants share the id(s) {dup}; give files a distinct name")
        return out

    def _corpora(self, backend: Any) -> list[CorpusWindows]:
        from quantfid import corpus

        out = []
        bos = backend.bos_id()
        for spec in self.cfg.corpora:
            c = corpus.load_corpus(spec)
            need = max(ctx * n for ctx, n in zip(self.cfg.contexts, self.cfg.chunks, strict=True))
            # tokenize a prefix long enough for the windows (4 chars/token is generous for BPE)
            text = c.text[: max(need * 8, 20_000)]
            toks = corpus.tokenize(text, backend.tokenizer, bos)
            if len(toks) < need and len(text) < len(c.text):
                toks = corpus.tokenize(c.text, backend.tokenizer, bos)
            for ctx, n in zip(self.cfg.contexts, self.cfg.chunks, strict=True):
                w = corpus.make_windows(toks, ctx, bos, SCORING, max_chunks=n)
                out.append(CorpusWindows(c.name, c.hash, ctx, w))
        return out

    def _tasks(self, backend: Any) -> list[TaskPrompts]:
        return [load_task(b.task, b.limit, backend.tokenizer) for b in self.cfg.benchmarks]

    def _tokens_per_s(self, backend: Any) -> float:
        """Forward speed from one short warm-up window (it also warms the kernels up)."""
        n = WARMUP_TOKENS
        ids = np.full((1, n), backend.tokenizer.bos_token_id or 0, dtype=np.int64)
        try:
            for _ in backend.logprobs(ids[:, :16], start=15):  # cold start, not timed
                pass
            t0 = time.perf_counter()
            for _ in backend.logprobs(ids, start=n - 1):
                pass
            dt = time.perf_counter() - t0
        except Exception:  # the ETA is advisory: never fail a study on it
            return CONSERVATIVE_TOKENS_PER_S
        # full log-softmax rows and longer contexts cost more per token: discount by 0.6
        return max(10.0, 0.6 * n / max(dt, 1e-6))

    # -- reference ----------------------------------------------------------------------------------
    def _ref_window_logprobs(self, backend: Any, cw: CorpusWindows, cache: RefLogprobs,
                             ref_hash: str) -> np.ndarray:
        key = hash_json({"ref": ref_hash, "windows": cw.windows.hash})[:32]
        got = cache.get(key)
        if got is not None:
            return got
        lp = self._window_logprobs(backend, cw)
        return cache.put(key, lp)

    @staticmethod
    def _window_logprobs(backend: Any, cw: CorpusWindows) -> np.ndarray:
        w = cw.windows
        parts = [t.numpy().reshape(-1, t.shape[-1])
                 for t in backend.logprobs(w.ids, batch_size=1, start=w.first, stop=w.n_ctx - 1)]
        return np.concatenate(parts, axis=0)

    # -- units ------------------------------------------------------------------------------------
    def _measure_unit(self, ws: Workspace, backend: Any, model_id: str, ref_id: str,
                      cw: CorpusWindows, ref_lp: np.ndarray, unit_hash: str) -> None:
        from quantfid.metrics.summary import summarize
        from quantfid.metrics.token import token_metrics
        from quantfid.metrics.types import STATS_KEYS

        w = cw.windows
        q_lp = self._window_logprobs(backend, cw)
        targets = w.targets.reshape(-1)
        tm = token_metrics(ref_lp, q_lp, targets)
        win = np.repeat(np.arange(len(w)), w.n_score)
        stats = summarize(tm, win, n_boot=FIDELITY_N_BOOT,
                          rng=np.random.default_rng(self.cfg.analysis.seed)).to_json()
        row: dict[str, Any] = {"model": model_id, "reference": ref_id, "corpus": cw.name,
                               "corpus_hash": cw.corpus_hash, "ctx": cw.ctx, "scoring": SCORING,
                               "n_windows": len(w)}
        for k in (*STATS_KEYS, "kld_mean_ci_low", "kld_mean_ci_high", "ln_ppl_ratio_ci_low",
                  "ln_ppl_ratio_ci_high"):
            row[k] = stats.get(k)
        ws.write_part("fidelity", _part(model_id, cw.key), [row], unit_hash)

    def _bench_unit(self, ws: Workspace, backend: Any, model_id: str, t: TaskPrompts,
                    ref_store: Path, unit_hash: str, *, reference: bool = False) -> None:
        """Outcomes and per-prompt fidelity of one model on one task, streamed in chunks.

        For the reference (``reference=True``) the gold-sequence log-probs go to the prompt
        reference store at ``ref_store`` (``quantfid.bench.refstore``, compact); for a quant
        each prompt's fidelity is computed against that store as its chunk is scored, so
        memory stays O(chunk), never O(prompts x tokens x vocab).
        """
        from quantfid.bench.refstore import PromptRefStore, PromptRefWriter
        from quantfid.bench.score import score_prompts

        # gold length order: the store wants prompts grouped by length
        order = sorted(range(len(t.prompts)), key=lambda i: (len(t.prompts[i].gold_ids()), i))
        passed: dict[int, bool] = {}
        pf: dict[int, PromptFidelity] = {}
        writer = store = None
        if reference:
            writer = PromptRefWriter(ref_store, model_id=model_id, model_hash=backend.info.hash or "",
                                     tokenizer_id=backend.tokenizer_id(), vocab_size=backend.vocab_size(),
                                     prompt_set_hash=t.prompt_set_hash)
        else:
            store = PromptRefStore(ref_store)
        try:
            for c0 in range(0, len(order), BENCH_CHUNK):
                chunk = order[c0:c0 + BENCH_CHUNK]
                results = score_prompts(backend.module, [t.prompts[i] for i in chunk],
                                        device=backend.device, batch_size=8, want_gold_logprobs=True)
                for i, r in zip(chunk, results, strict=True):
                    p, lp = t.prompts[i], r.gold_logprobs
                    assert lp is not None
                    passed[i] = int(np.argmax(r.loglik)) == p.gold
                    if writer is not None:
                        writer.append(p.id, p.gold_ids(), lp)
                    else:
                        assert store is not None
                        pf[i] = _prompt_fidelity(model_id, t.name, p,
                                                 store.metrics(p.id, p.gold_ids(), lp))
            if writer is not None:
                writer.close()
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        outs = [Outcome(model_id, t.name, t.prompts[i].id, passed[i], score=1.0 if passed[i] else 0.0,
                        source="quantfid") for i in range(len(t.prompts))]
        if not reference:
            # prompt fidelity first, outcomes last: the outcomes part marks the unit done
            ws.add_prompt_fidelity(_part(model_id, t.name), [pf[i] for i in range(len(t.prompts))],
                                   unit_hash)
        ws.add_outcomes(_part(model_id, t.name), outs, unit_hash)

    # -- the run ----------------------------------------------------------------------------------
    def run(self) -> StudyResult:
        ws = Workspace(self.out)
        self._record_config(ws)
        with self.t.stage("setup"):
            backend = self._load_reference()
            ref_info: Model = backend.info
            ref_hash = ref_info.hash or hash_json({"source": ref_info.source})
            quants = self._quant_sources(ref_hash)
            corpora = self._corpora(backend)
            tasks = self._tasks(backend)
            plan = Plan(ref_info.id, quants, corpora, tasks)
            self.say(plan.describe())
            tps = self._tokens_per_s(backend)
            todo = self._todo(ws, plan, ref_hash)
            self._print_eta(plan, todo, tps)
            ws.add_model(Model(id=ref_info.id, role="reference", source=ref_info.source,
                               format=ref_info.format, scheme=ref_info.scheme, bits_per_weight=32.0,
                               hash=ref_hash, extra={"dtype": self.cfg.reference.dtype}))
            for cw in corpora:
                ws.set_entry("corpora", cw.name, {"hash": cw.corpus_hash})
            for t in tasks:
                ws.set_entry("benchmarks", t.name, {**t.info, "prompt_set_hash": t.prompt_set_hash,
                                                    "n_prompts": len(t.prompts)})
        cache = RefLogprobs(ws)
        ref_lp: dict[str, np.ndarray] = {}
        ref_gold: dict[str, Path] = {}
        with self.t.stage("reference"):
            pending_c = {cw.key for cw in corpora if any(
                not ws.has_part("fidelity", _part(q.id, cw.key), fidelity_hash(ref_hash, q, cw))
                for q in quants)}
            pbar = bar(total=len(pending_c) + len(tasks), desc="reference", unit="unit",
                       disable=self.progress_disabled)
            for cw in corpora:
                if cw.key in pending_c:
                    ref_lp[cw.key] = self._ref_window_logprobs(backend, cw, cache, ref_hash)
                    pbar.update(1)
            for t in tasks:
                ref_gold[t.name] = self._reference_bench(ws, backend, ref_info.id, ref_hash, t)
                pbar.update(1)
            pbar.close()

        self._run_quants(ws, backend, plan, ref_info.id, ref_hash, ref_lp, ref_gold)
        del ref_lp, ref_gold
        with self.t.stage("ingest"):
            self._ingest(ws)
        self._prune(ws, plan)

        with self.t.stage("analysis"):
            analysis = self._analyse(ws)
        with self.t.stage("report"):
            from quantfid.report import provenance
            from quantfid.report.build import write_report

            prov = provenance.from_workspace(
                ws, seeds={"analysis": self.cfg.analysis.seed, "fidelity_bootstrap": self.cfg.analysis.seed},
                timings=dict(self.t.seconds), config=self.cfg.to_json())
            prov["units"] = {"run": self.units_run, "skipped": self.units_skipped}
            prov["cpu_s"] = dict(self.t.cpu)
            files = write_report(self.out, analysis, prov)
        # the report's own time is known only now: add it to summary.json's provenance
        summary = json.loads(files.summary.read_text())
        summary["provenance"]["timings_s"] = dict(self.t.seconds)
        summary["provenance"]["cpu_s"] = dict(self.t.cpu)
        atomic.write_json(files.summary, summary)
        v = files.verdict
        return StudyResult(self.out, analysis, v, dict(self.t.seconds), self.units_run,
                           self.units_skipped)

    def _record_config(self, ws: Workspace) -> None:
        """Record the configuration beside the tables (``quantfid report`` reads its analysis settings)."""
        atomic.write_json(ws.path / "study-config.json", self.cfg.to_json())

    def _todo(self, ws: Workspace, plan: Plan, ref_hash: str) -> dict[str, int]:
        n_measure = sum(not ws.has_part("fidelity", _part(q.id, cw.key), fidelity_hash(ref_hash, q, cw))
                        for q in plan.quants for cw in plan.corpora)
        n_bench = sum(not ws.has_part("outcomes", _part(q.id, t.name), bench_hash(ref_hash, q.key_hash, t))
                      for q in plan.quants for t in plan.tasks)
        n_ref = sum(not ws.has_part("outcomes", _part(plan.reference, t.name), bench_hash(ref_hash, "reference", t))
                    for t in plan.tasks)
        return {"measure": n_measure, "bench": n_bench, "reference_bench": n_ref}

    def _print_eta(self, plan: Plan, todo: dict[str, int], tps: float) -> None:
        per_c = {cw.key: cw.forward_tokens for cw in plan.corpora}
        per_t = {t.name: t.forward_tokens for t in plan.tasks}
        n_c, n_t = max(len(per_c), 1), max(len(per_t), 1)
        tok = (todo["measure"] * sum(per_c.values()) / n_c
               + todo["bench"] * sum(per_t.values()) / n_t
               + todo["reference_bench"] * sum(per_t.values()) / n_t
               + (sum(per_c.values()) if todo["measure"] else 0))  # the reference's windows
        n_quantize = sum(1 for _ in plan.quants) if (todo["measure"] or todo["bench"]) else 0
        eta = tok / tps + 4.0 * n_quantize + 20.0
        self.say(f"to do: {todo['measure']} measure unit(s), {todo['bench'] + todo['reference_bench']} "
                 f"bench unit(s), ~{int(tok)} forward tokens at ~{tps:.0f} tokens/s "
                 f"(warm-up, discounted): ETA ~{eta / 60:.1f} min")

    def _reference_bench(self, ws: Workspace, backend: Any, ref_id: str, ref_hash: str,
                         t: TaskPrompts) -> Path:
        """The reference's outcomes and prompt store for task ``t`` (reused when present)."""
        from quantfid.bench.refstore import PromptRefStore

        uh = bench_hash(ref_hash, "reference", t)
        path = ws.array_dir("ref") / f"prompts-{t.name}-{uh[:24]}"
        if PromptRefStore.exists(path) and ws.has_part("outcomes", _part(ref_id, t.name), uh):
            self.units_skipped += 1
            return path
        self._bench_unit(ws, backend, ref_id, t, path, uh, reference=True)
        self.units_run += 1
        return path

    def _run_quants(self, ws: Workspace, ref_backend: Any, plan: Plan, ref_id: str, ref_hash: str,
                    ref_lp: dict[str, np.ndarray], ref_gold: dict[str, Path]) -> None:
        from quantfid.backends.hf import HFBackend
        from quantfid.quantize import QuantCache, get_recipe, quantize_model

        qcache = QuantCache()
        from tqdm import tqdm

        # one bar per stage, stacked (position) since the stages interleave quant by quant
        bars = {s: tqdm(total=n, desc=f"{s:9s}", unit="unit", file=sys.stderr, position=i,
                        leave=False, dynamic_ncols=True, disable=self.progress_disabled)
                for i, (s, n) in enumerate((("quantize", len(plan.quants)),
                             ("measure", len(plan.quants) * len(plan.corpora)),
                             ("bench", len(plan.quants) * len(plan.tasks))))}
        tty = sys.stderr.isatty() and self.progress_disabled is not True
        try:
            for i, q in enumerate(plan.quants, 1):
                t_q, c_q = dict(self.t.seconds), dict(self.t.cpu)
                m_units = [(cw, fidelity_hash(ref_hash, q, cw)) for cw in plan.corpora]
                b_units = [(t, bench_hash(ref_hash, q.key_hash, t)) for t in plan.tasks]
                m_todo = [(cw, h) for cw, h in m_units if not ws.has_part("fidelity", _part(q.id, cw.key), h)]
                b_todo = [(t, h) for t, h in b_units if not ws.has_part("outcomes", _part(q.id, t.name), h)]
                self.units_skipped += len(m_units) - len(m_todo) + len(b_units) - len(b_todo)
                bars["measure"].update(len(m_units) - len(m_todo))
                bars["bench"].update(len(b_units) - len(b_todo))
                if not m_todo and not b_todo:
                    bars["quantize"].update(1)
                    continue
                with self.t.stage("quantize"):
                    backend = self._quant_backend(q, ref_backend, ref_hash, ws, qcache,
                                                  get_recipe, quantize_model, HFBackend)
                bars["quantize"].update(1)
                for cw, h in m_todo:
                    with self.t.stage("measure"):
                        lp = ref_lp.get(cw.key)
                        if lp is None:
                            lp = ref_lp[cw.key] = self._ref_window_logprobs(
                                ref_backend, cw, RefLogprobs(ws), ref_hash)
                        self._measure_unit(ws, backend, q.id, ref_id, cw, lp, h)
                    self.units_run += 1
                    bars["measure"].update(1)
                for t, h in b_todo:
                    with self.t.stage("bench"):
                        self._bench_unit(ws, backend, q.id, t, ref_gold[t.name], h)
                    self.units_run += 1
                    bars["bench"].update(1)
                del backend
                if not tty:  # no live bars: one line per quant, so a log shows the progress
                    spent = {k: v - t_q.get(k, 0.0) for k, v in self.t.seconds.items()
                             if v - t_q.get(k, 0.0) > 0}
                    cpu = sum(v - c_q.get(k, 0.0) for k, v in self.t.cpu.items())
                    self.say(f"[{i}/{len(plan.quants)}] {q.id}: {len(m_todo)} measure + "
                             f"{len(b_todo)} bench unit(s); " +
                             ", ".join(f"{k} {v:.1f}s" for k, v in spent.items()) +
                             f" (cpu {cpu:.1f}s)")
        finally:
            for b in bars.values():
                b.close()

    def _quant_backend(self, q: QuantSource, ref_backend: Any, ref_hash: str, ws: Workspace,
                       qcache: Any, get_recipe: Any, quantize_model: Any, hf_backend: Any) -> Any:
        from quantfid.backends.base import LoadedModel
        from quantfid.backends.hf import check_same_tokenizer, load_hf

        if q.kind == "recipe":
            # one working copy of the in-memory reference serves the whole cohort: each
            # recipe rewrites every quantizable tensor from the reference (``source``)
            if self._work is None:
                self._work = copy.deepcopy(ref_backend.module)
            module = self._work
            rep = quantize_model(module, get_recipe(q.spec), cache=qcache, reference_hash=ref_hash,
                                 progress=False, source=ref_backend.module)
            info = Model(id=q.id, role="quant", source=f"recipe:{q.spec}@{ref_backend.info.id}",
                         format="recipe", scheme=q.spec, bits_per_weight=rep.bits_per_weight,
                         bytes=rep.bytes, hash=rep.hash,
                         extra={"quantized_bits_per_weight": rep.quantized_bits_per_weight,
                                "type_counts": rep.type_counts()})
            ws.add_model(info)
            loaded = LoadedModel(module=module, tokenizer=ref_backend.tokenizer, info=info,
                                 device=ref_backend.device, dtype=ref_backend.loaded.dtype)
            return hf_backend(loaded)
        r = self.cfg.reference
        loaded = load_hf(q.spec, dtype=r.dtype, device=r.device, role="quant", name=q.id)
        b = hf_backend(loaded)
        check_same_tokenizer(ref_backend.tokenizer_id(), ref_backend.info.id, b.tokenizer_id(), q.id)
        ws.add_model(Model(id=q.id, role="quant", source=q.spec, format=loaded.info.format,
                           scheme=loaded.info.scheme, hash=q.key_hash))
        return b

    def _ingest(self, ws: Workspace) -> None:
        """Outcome files of other tools named in the config (``[[ingest]]``); the ingest
        module keys and skips its own units."""
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

    def _prune(self, ws: Workspace, plan: Plan) -> None:
        """Drop this study's parts (named ``<model>__<unit>``) that the current plan no
        longer has, and quants registered by an earlier plan with nothing left: the
        analysis then covers exactly the configured cohort, corpora and contexts."""
        keep = {_part(m, cw.key) for m in (plan.reference, *(q.id for q in plan.quants))
                for cw in plan.corpora}
        keep |= {_part(m, t.name) for m in (plan.reference, *(q.id for q in plan.quants))
                 for t in plan.tasks}
        dropped = []
        for table in ("fidelity", "outcomes", "prompt_fidelity"):
            for p in ws.parts(table):
                name = p.stem
                if "__" in name and name not in keep:
                    p.unlink()
                    dropped.append(f"{table}/{name}")
        left: set[str] = set()
        for t in ("fidelity", "outcomes", "prompt_fidelity") if dropped else ():
            tbl = ws.read_table(t)
            if "model" in tbl.column_names:
                left |= set(tbl.column("model").to_pylist())
        wanted = {plan.reference, *(q.id for q in plan.quants)}
        if dropped:
            with ws.update() as m:
                for mid in [k for k, v in m["models"].items()
                            if k not in wanted and k not in left and v.get("role") == "quant"]:
                    del m["models"][mid]
            self.say(f"dropped {len(dropped)} unit(s) of an earlier configuration: "
                     + ", ".join(dropped[:8]) + (" ..." if len(dropped) > 8 else ""))

    def _analyse(self, ws: Workspace) -> dict[str, Any]:
        from quantfid.analysis.run import run_all

        a = self.cfg.analysis
        res = run_all(ws, k=a.k or None, band=a.band, n_boot=a.n_boot,
                      rng=np.random.default_rng(a.seed)).to_json()
        atomic.write_json(ws.path / ANALYSIS_FILE, _json_safe(res))
        return res


# ---- benchmarks: built-in tasks, scored per prompt ----------------------------------------------

def builtin_tasks() -> dict[str, Any]:
    """Built-in task objects by name (``quantfid.bench``'s registry when it has one)."""
    import importlib
    import pkgutil

    from quantfid.bench import tasks as pkg

    reg = getattr(importlib.import_module("quantfid.bench"), "TASKS", None)
    if isinstance(reg, dict) and reg:
        return {str(k): (v() if isinstance(v, type) else v) for k, v in reg.items()}
    out: dict[str, Any] = {}
    for mod in pkgutil.iter_modules(pkg.__path__):
        m = importlib.import_module(f"{pkg.__name__}.{mod.name}")
        for obj in vars(m).values():
            if isinstance(obj, type) and obj.__module__ == m.__name__ and \
                    hasattr(obj, "prompts") and isinstance(getattr(obj, "name", None), str):
                out[str(obj.name)] = obj()  # type: ignore[attr-defined]
    return out


def load_task(name: str, limit: int | None, tokenizer: Any) -> TaskPrompts:
    """The first ``limit`` prompts (default: the task's default size) of a built-in task, encoded."""
    from quantfid.bench.encode import encode_prompt
    from quantfid.bench.types import prompt_set_hash

    tasks = builtin_tasks()
    if name not in tasks:
        raise QuantfidError(f"unknown benchmark task {name!r}; built-in: {', '.join(sorted(tasks))}")
    task = tasks[name]
    n = int(limit) if limit is not None else int(task.n_default)
    prompts = task.prompts()[:n]
    info = {"n_default": task.n_default, "n_full": task.n_full, "chance": task.chance,
            "source": getattr(task, "source", None), "licence": getattr(task, "licence", None)}
    return TaskPrompts(name, [encode_prompt(tokenizer, p) for p in prompts],
                       prompt_set_hash(prompts), info)


def _prompt_fidelity(model_id: str, bench: str, p: Any, tm: Any) -> PromptFidelity:
    """Per-prompt fidelity (KL(P_ref || P_model), nats, over the prompt's scored tokens: the
    prompt after its first token, then the gold answer; identical for every model)."""
    def mean(x: np.ndarray | None) -> float | None:
        return None if x is None else float(np.mean(x))

    return PromptFidelity(model=model_id, benchmark=bench, prompt_id=p.id, n_tokens=len(tm),
                          kld_mean=float(tm.kld.mean()), kld_max=float(tm.kld.max()),
                          kld_sum=float(tm.kld.sum()), rkld_mean=mean(tm.rkld),
                          jsd_mean=mean(tm.jsd), same_top1=float(tm.same_top1.mean()),
                          dp_mean=mean(tm.dp), nll_ref_mean=mean(tm.nll_ref),
                          nll_q_mean=mean(tm.nll_q))


def _json_safe(obj: Any) -> Any:
    from quantfid.report.build import clean

    return clean(obj)


def run_study(cfg: StudyConfig, out: str | Path, log: IO[str] | None = None,
              progress: bool | None = None) -> StudyResult:
    """Run ``cfg`` into the workspace ``out`` (created or resumed); see the module docstring."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Study(cfg, out, log=log, progress=progress).run()
