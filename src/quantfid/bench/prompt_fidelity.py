"""Benchmark outcomes and per-prompt fidelity from the same forward passes.

For each prompt the scored tokens are the same ids for every model: the prompt after its
first token, then the gold answer (``EncodedPrompt.gold_ids()[1:]``). The gold choice's
forward (prefix + gold continuation, see :mod:`quantfid.bench.score`) yields the model's
log-probs over exactly those tokens, so fidelity costs no second run.

- The workspace reference's log-probs go once to a compact store
  (:mod:`quantfid.bench.refstore`) under ``arrays/prompts/<benchmark>/<ref>-<prompt set>``.
- A quant's log-probs are compared with it token by token (``CompactStore.metrics_against``):
  KL(P_ref || P_quant) in nats (top-k buckets + the store's tail estimate; log-softmax in
  float64 of the model's float32 log-probs), reverse KL, JSD, same top-1, dp,
  NLL of both; a :class:`~quantfid.records.PromptFidelity` row holds their means over the
  prompt's scored tokens, plus KL max and sum.
- Outcomes: ``passed`` = lm-eval ``acc`` (argmax of summed log-prob) under ``<benchmark>``
  and ``acc_norm`` (argmax of summed log-prob / choice length in characters, as lm-eval)
  under ``<benchmark>:acc_norm``; ``score`` holds the same 0/1.

Units are keyed by a hash of their inputs (model hash, benchmark, prompt set hash, the
token ids, and for fidelity the reference's hash): a re-run skips finished units.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantfid._version import __version__
from quantfid.backends.base import LoadedModel
from quantfid.bench.encode import EncodedPrompt, encode_prompt
from quantfid.bench.refstore import PromptRefStore, PromptRefWriter
from quantfid.bench.score import iter_scores
from quantfid.bench.types import ChoicePrompt
from quantfid.errors import FormatError, QuantfidError
from quantfid.hashing import hash_json
from quantfid.metrics.types import TokenMetrics
from quantfid.progress import bar
from quantfid.records import Model, Outcome, PromptFidelity
from quantfid.store.workspace import Workspace

UNIT_VERSION = 1


@dataclass(frozen=True)
class TextPrompt:
    """A prompt without choices (``--prompts FILE.jsonl`` rows without an answer)."""

    id: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "prompt": self.text}


AnyPrompt = ChoicePrompt | TextPrompt


@dataclass(frozen=True)
class BenchResult:
    """One model on one benchmark: accuracy, cost, and mean per-prompt KLD (quants)."""

    model: str
    benchmark: str
    n: int
    acc: float | None
    acc_norm: float | None
    kld_mean: float | None
    tokens_per_prompt: float
    seconds: float
    skipped: bool

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def model_key(model: Model) -> str:
    """The model's content hash, or a hash of its record when it has none."""
    return model.hash or hash_json(model.to_dict())


def encode_text_prompt(tokenizer: Any, prompt: TextPrompt) -> EncodedPrompt:
    """A prompt without an answer: its last token stands in as the single 'choice'."""
    ids = list(tokenizer(prompt.text, add_special_tokens=False)["input_ids"])
    if len(ids) < 2:
        raise QuantfidError(f"prompt {prompt.id!r} has fewer than 2 tokens: nothing to score")
    arr = np.asarray(ids, dtype=np.int64)
    return EncodedPrompt(id=prompt.id, context=arr[:-1], continuations=(arr[-1:],), gold=0)


def encode_any(tokenizer: Any, prompt: AnyPrompt) -> EncodedPrompt:
    if isinstance(prompt, TextPrompt):
        return encode_text_prompt(tokenizer, prompt)
    return encode_prompt(tokenizer, prompt)


def fidelity_row(model: str, benchmark: str, prompt_id: str, tm: TokenMetrics) -> PromptFidelity:
    """Means over the prompt's scored tokens (KL also max and sum), as a PromptFidelity row."""
    def mean(x: np.ndarray | None) -> float | None:
        return None if x is None else float(np.mean(x))

    return PromptFidelity(model=model, benchmark=benchmark, prompt_id=prompt_id,
                          n_tokens=len(tm), kld_mean=float(np.mean(tm.kld)),
                          kld_max=float(np.max(tm.kld)), kld_sum=float(np.sum(tm.kld)),
                          rkld_mean=mean(tm.rkld), jsd_mean=mean(tm.jsd),
                          same_top1=float(np.mean(tm.same_top1)), dp_mean=mean(tm.dp),
                          nll_ref_mean=mean(tm.nll_ref), nll_q_mean=mean(tm.nll_q))


def prompt_hash(prompt: AnyPrompt) -> str:
    return hash_json(prompt.to_json())[:16]


def ref_store_dir(ws: Workspace, benchmark: str, reference: Model, set_hash: str) -> Path:
    return ws.array_dir("prompts", benchmark) / f"{model_key(reference)[:16]}-{set_hash[:16]}"


def _vocab_size(lm: LoadedModel) -> int:
    head: Any = lm.module.get_output_embeddings()  # type: ignore[operator]
    return int(head.weight.shape[0])


def _pick(loglik: np.ndarray, norm: np.ndarray | None = None) -> int:
    return int(np.argmax(loglik if norm is None else loglik / norm))


def _stored_result(ws: Workspace, model: Model, benchmark: str, part: str, n: int,
                   tokens: float) -> BenchResult:
    acc = acc_norm = kld = None
    if ws.has_part("outcomes", part):
        rows = [o for o in ws.outcomes() if o.model == model.id]
        a = [o.passed for o in rows if o.benchmark == benchmark]
        b = [o.passed for o in rows if o.benchmark == f"{benchmark}:acc_norm"]
        acc = float(np.mean(a)) if a else None
        acc_norm = float(np.mean(b)) if b else None
    if ws.has_part("prompt_fidelity", part):
        k = [r.kld_mean for r in ws.prompt_fidelity()
             if r.model == model.id and r.benchmark == benchmark]
        kld = float(np.mean(k)) if k else None
    return BenchResult(model.id, benchmark, n, acc, acc_norm, kld, tokens, 0.0, True)


def evaluate(ws: Workspace, lm: LoadedModel, benchmark: str, prompts: Sequence[AnyPrompt], *,
             outcomes: bool = True, batch_size: int = 4, progress: bool = True,
             info: dict[str, Any] | None = None) -> BenchResult:
    """Score ``prompts`` with ``lm``; store outcomes and per-prompt fidelity in ``ws``.

    The reference (``lm.info.role == "reference"`` or the workspace's reference id) stores
    its log-probs; any other model needs them stored already (run the reference first) and
    gets PromptFidelity rows. ``outcomes=False`` (prompts without real choices) skips
    Outcome rows. Returns the accuracy and mean per-prompt KLD.
    """
    if not prompts:
        raise QuantfidError(f"benchmark {benchmark}: no prompts")
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise FormatError(f"benchmark {benchmark}: prompt id {dup!r} appears more than once")
    model = lm.info
    known = ws.manifest["models"]
    if model.id not in known:
        ws.add_model(model)
    else:
        model = ws.model(model.id)
    ref = ws.reference
    is_ref = model.role == "reference" or (ref is not None and ref.id == model.id)
    if ref is None:
        ref = ws.require_reference()
    encoded = [encode_any(lm.tokenizer, p) for p in prompts]
    set_hash = hash_json([p.to_json() for p in prompts])
    tok_hash = hash_json([[e.context.tolist(), [c.tolist() for c in e.continuations]]
                          for e in encoded])
    base = {"v": UNIT_VERSION, "model": model_key(model), "benchmark": benchmark,
            "prompts": set_hash, "tokens": tok_hash}
    out_unit = hash_json(base)
    fid_unit = hash_json({**base, "reference": model_key(ref)})
    part = f"{benchmark}@{model.id}"
    tokens = float(np.mean([e.n_tokens for e in encoded]))
    store_dir = ref_store_dir(ws, benchmark, ref, set_hash)
    do_out = outcomes and not ws.has_part("outcomes", part, out_unit)
    do_fid = (not PromptRefStore.exists(store_dir) if is_ref
              else not ws.has_part("prompt_fidelity", part, fid_unit))
    ws.set_entry("benchmarks", benchmark, {
        "n": len(prompts), "prompt_set_hash": set_hash, "tokens_per_prompt": tokens,
        "kind": "choice" if outcomes else "prompts", **(info or {})})
    if not do_out and not do_fid:
        return _stored_result(ws, model, benchmark, part, len(prompts), tokens)

    store = PromptRefStore(store_dir) if do_fid and not is_ref else None
    writer = None
    if do_fid and is_ref:
        vocab = _vocab_size(lm)
        writer = PromptRefWriter(store_dir, model_id=model.id, model_hash=model_key(model),
                                 tokenizer_id=str(getattr(lm.tokenizer, "name_or_path", "")),
                                 vocab_size=vocab, prompt_set_hash=set_hash)
    order = sorted(range(len(encoded)),
                   key=lambda i: (len(encoded[i].gold_ids()), len(encoded[i].context)))
    out_rows: list[Outcome] = []
    norm_rows: list[Outcome] = []
    fid_rows: list[PromptFidelity] = []
    t0 = time.perf_counter()
    pbar = bar(total=len(prompts), desc=f"{benchmark} {model.id}", unit="prompt",
               disable=None if progress else True)
    try:
        for i, res in iter_scores(lm.module, encoded, lm.device, batch_size,
                                  want_gold_logprobs=do_fid, order=order):
            p, e = prompts[i], encoded[i]
            if do_out and isinstance(p, ChoicePrompt):
                lens = np.array([float(len(c)) for c in p.choices])
                for rows, name, pick in ((out_rows, benchmark, _pick(res.loglik)),
                                         (norm_rows, f"{benchmark}:acc_norm",
                                          _pick(res.loglik, lens))):
                    ok = pick == p.gold
                    rows.append(Outcome(model=model.id, benchmark=name, prompt_id=p.id,
                                        passed=ok, score=float(ok), source="quantfid",
                                        source_version=__version__, prompt_hash=prompt_hash(p)))
            if do_fid:
                assert res.gold_logprobs is not None
                if writer is not None:
                    writer.append(p.id, e.gold_ids(), res.gold_logprobs.numpy())
                elif store is not None:
                    tm = store.metrics(p.id, e.gold_ids(), res.gold_logprobs)
                    fid_rows.append(fidelity_row(model.id, benchmark, p.id, tm))
            pbar.update(1)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        pbar.close()
    seconds = time.perf_counter() - t0
    if writer is not None:
        writer.close()
    if do_out and out_rows:
        by_id = {q.id: k for k, q in enumerate(prompts)}
        out_rows.sort(key=lambda o: by_id[o.prompt_id])
        norm_rows.sort(key=lambda o: by_id[o.prompt_id])
        ws.add_outcomes(part, out_rows + norm_rows, out_unit)
    if fid_rows:
        fid_rows.sort(key=lambda r: ids.index(r.prompt_id))
        ws.add_prompt_fidelity(part, fid_rows, fid_unit)
    done = _stored_result(ws, model, benchmark, part, len(prompts), tokens)
    return dataclasses.replace(done, seconds=seconds, skipped=False)


# ---- measure --prompts -----------------------------------------------------------------------
def read_prompts_jsonl(path: str | Path) -> list[AnyPrompt]:
    """``{"id", "prompt", optional "answer"}`` per line -> prompts (answer = one choice)."""
    p = Path(path)
    if not p.is_file():
        raise QuantfidError(f"prompts file not found: {p}")
    out: list[AnyPrompt] = []
    with open(p, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FormatError(f"{p}:{n}: not valid JSON: {e}") from e
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                    or "id" not in row:
                raise FormatError(f"{p}:{n}: expected an object with 'id' and a string 'prompt'")
            pid, answer = str(row["id"]), row.get("answer")
            if answer is None:
                out.append(TextPrompt(pid, row["prompt"]))
            elif isinstance(answer, str) and answer:
                out.append(ChoicePrompt(pid, row["prompt"], (answer,), 0))
            else:
                raise FormatError(f"{p}:{n}: 'answer' must be a non-empty string")
    if not out:
        raise FormatError(f"{p}: no prompts")
    return out


def ingested_prompts(ws: Workspace, benchmark: str) -> list[AnyPrompt]:
    """Prompts of an ingested benchmark (the workspace ``prompts`` table), as scored tokens.

    The text comes from the reference's rows (else the first model that has them). The
    answer teacher-forced after the prompt, the same for every model: the gold
    continuation (log-likelihood tasks), else the logged target, else the reference's own
    first response (generation tasks such as LiveCodeBench's ``code_list``), else none.
    """
    from quantfid.ingest.prompts import read_prompts

    rows = read_prompts(ws, benchmark=benchmark)
    if not rows:
        return []
    ref = ws.reference
    ref_rows = read_prompts(ws, model=ref.id, benchmark=benchmark) if ref else []
    out: list[AnyPrompt] = []
    seen: set[str] = set()
    for r in ref_rows or rows:
        if r.prompt_id in seen:
            continue
        seen.add(r.prompt_id)
        answer = (r.continuations[r.gold] if r.gold is not None and r.gold < len(r.continuations)
                  else r.target or (r.responses[0] if r.responses else None))
        out.append(ChoicePrompt(r.prompt_id, r.prompt, (answer,), 0) if answer
                   else TextPrompt(r.prompt_id, r.prompt))
    return out


Loader = Callable[[Model], LoadedModel]


def load_workspace_model(ws: Workspace, model: Model, reference: LoadedModel | None = None,
                         *, dtype: str = "float32", device: str = "auto") -> LoadedModel:
    """Load a workspace model to run it: the embedded model, a GGUF/dir/hub id, or a recipe
    (``recipe:<name>@<reference>``) applied to a deep copy of ``reference``."""
    import copy

    from quantfid.backends.hf import load_hf

    if model.format == "recipe" or model.source.startswith("recipe:"):
        from quantfid.quantize import get_recipe, quantize_model

        name = model.source[len("recipe:"):].split("@", 1)[0] if model.source.startswith(
            "recipe:") else (model.scheme or model.id)
        if reference is None:
            reference = load_workspace_model(ws, ws.require_reference(), dtype=dtype,
                                             device=device)
        module = copy.deepcopy(reference.module)
        quantize_model(module, get_recipe(name), reference_hash=reference.info.hash,
                       progress=False)
        return LoadedModel(module=module, tokenizer=reference.tokenizer, info=model,
                           device=reference.device, dtype=reference.dtype)
    if model.source.startswith("embedded:"):
        lm = load_hf("embedded", dtype=dtype, device=device, role=model.role, name=model.id)
    elif model.format in ("gguf", "hf", "safetensors") and model.source:
        lm = load_hf(model.source, dtype=dtype, device=device, role=model.role, name=model.id)
    else:
        raise QuantfidError(f"cannot run model {model.id!r} (format {model.format!r}, source "
                            f"{model.source!r}); its per-prompt data must come from ingest")
    return dataclasses.replace(lm, info=model)


def measure_prompts(ws: Workspace, source: str, *, load: Loader | None = None,
                    name: str | None = None, full: bool = False, limit: int | None = None,
                    batch_size: int = 4, progress: bool = True) -> list[BenchResult]:
    """``quantfid measure --prompts BENCH|FILE.jsonl``: the reference, then every quant of
    the workspace, over the prompts; per-prompt fidelity (and outcomes for built-in tasks).

    source: a built-in task name, comma-separated names or ``all``, or a JSONL file
    (benchmark name: ``name`` or the file stem). load: turns a workspace Model into a
    LoadedModel (default :func:`load_workspace_model`, which keeps the reference loaded
    and quantizes recipe quants from it).
    """
    from quantfid.bench.tasks import TASKS, get_task, load_prompts, resolve_tasks

    sets: list[tuple[str, list[AnyPrompt], bool, dict[str, Any]]] = []
    if Path(source).suffix == ".jsonl" or Path(source).is_file():
        prompts = read_prompts_jsonl(source)
        sets.append((name or Path(source).stem, prompts, False, {"source": str(source)}))
    elif source in ("all", "default") or all(s.strip() in TASKS for s in source.split(",")):
        for t in resolve_tasks(source):
            task = get_task(t)
            sets.append((t, list(load_prompts(t, full, limit)), True,
                         {"source": getattr(task, "source", ""),
                          "licence": getattr(task, "licence", "")}))
    elif ingested := ingested_prompts(ws, source):
        sets.append((source, ingested, False, {"source": f"ingested:{source}"}))
    else:
        raise QuantfidError(f"--prompts {source!r}: not a JSONL file, a built-in task "
                            f"({', '.join(TASKS)}) nor an ingested benchmark of {ws.path}")
    ref_model = ws.require_reference()
    ref_lm: LoadedModel | None = None

    def default_load(m: Model) -> LoadedModel:
        nonlocal ref_lm
        if m.id == ref_model.id:
            if ref_lm is None:
                ref_lm = load_workspace_model(ws, m)
            return ref_lm
        return load_workspace_model(ws, m, ref_lm)

    loader = load or default_load
    results: list[BenchResult] = []
    for m in [ref_model, *ws.models("quant")]:
        lm = loader(m)
        for bench, prompts, outs, info in sets:
            results.append(evaluate(ws, lm, bench, prompts, outcomes=outs,
                                    batch_size=batch_size, progress=progress, info=info))
    return results
