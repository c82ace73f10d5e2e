"""Does a GGML recipe measured in torch get the KLD llama.cpp gives llama.cpp's own quant?

The check behind ``ggml-cpu`` numerics (:mod:`quantfid.quantize.numerics`), preset by preset:

* llama.cpp side: the reference exported as an F32 GGUF, quantized by llama.cpp itself
  (``llama_model_quantize``, no importance matrix), both run by the llama.cpp backend
  (llama-perplexity's numerics); the quant's per-token metrics against that reference.
* quantfid side: the recipe of the same name applied to the torch reference in memory, run
  under ``ggml-cpu`` against the torch float32 reference under ``ggml-cpu`` (f16 K/V, as
  llama.cpp runs its F32 reference); and, for context, both under ``weights`` (today's
  weight-only figure).

Same token windows on both sides (llama.cpp's windowing, :func:`quantfid.corpus.make_windows`
with scoring ``llamacpp``), per-token metrics by :func:`quantfid.metrics.token_metrics`.
The pieces are small functions so tests and ``benchmarks/bench_agreement.py`` share them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from quantfid.backends.base import Reducer, TopKRows
from quantfid.corpus import Windows
from quantfid.errors import QuantfidError
from quantfid.metrics import TokenMetrics, token_metrics
from quantfid.quantize.names import ModelShape
from quantfid.quantize.recipe import Recipe

R = TypeVar("R")
CHUNK = 256


# ---- files ----------------------------------------------------------------------------------
def export_reference(module: torch.nn.Module, path: str | Path,
                     reference_gguf: str | Path | None = None,
                     tokenizer_gguf: str | Path | None = None) -> Path:
    """Write ``module`` (a float32 Llama) as an all-F32 GGUF: metadata and tokenizer copied
    from ``reference_gguf`` (the file ``module`` was loaded from), or the architecture from the
    config and the tokenizer from ``tokenizer_gguf`` (llama.cpp only loads a file with one)."""
    from quantfid.quantize.apply import quantize_model
    from quantfid.quantize.export import write_gguf

    f32 = Recipe("F32", "every weight kept in float32", default="F32")
    report = quantize_model(module, f32, keep_data=True, progress=False)
    return write_gguf(path, module, report, reference_gguf=reference_gguf,
                      tokenizer_gguf=tokenizer_gguf)


def llamacpp_quantize(src: str | Path, dst: str | Path, recipe: Recipe,
                      threads: int | None = None) -> Path:
    """Quantize GGUF ``src`` to ``dst`` with llama.cpp itself: the file type of the recipe's
    preset (``--pure`` for pure recipes), no importance matrix."""
    from quantfid.backends.llamacpp import import_llama_cpp

    lc = import_llama_cpp()
    if recipe.preset is None or recipe.rules:
        raise QuantfidError(f"recipe {recipe.name} is not a llama.cpp preset")
    ftype = getattr(lc, f"LLAMA_FTYPE_MOSTLY_{recipe.preset}", None)
    if ftype is None:
        raise QuantfidError(f"llama.cpp has no file type {recipe.preset}")
    params = lc.llama_model_quantize_default_params()
    params.ftype = ftype
    params.pure = recipe.pure
    params.nthread = threads or 0
    out = Path(dst)
    rc = lc.llama_model_quantize(str(src).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0 or not out.is_file():
        raise QuantfidError(f"llama.cpp could not quantize {src} as {recipe.name} (code {rc})")
    return out


def ggml_presets(shape: ModelShape) -> list[Recipe]:
    """Every built-in llama.cpp preset recipe (``-pure`` ones too) that needs no importance
    matrix on ``shape``: the ones llama.cpp can make for this model without one."""
    from quantfid.quantize.recipes import list_recipes

    return [r for r in list_recipes()
            if r.preset is not None and not r.rules and not r.needs_imatrix(shape)]


def type_differences(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """``name: expected != actual`` for every tensor of ``expected`` whose type differs."""
    return [f"{n}: {t} != {actual.get(n)}" for n, t in expected.items() if actual.get(n) != t]


# ---- scoring --------------------------------------------------------------------------------
class KeepLogits:
    """A reducer that keeps a float32 copy of every chunk (the reference's logits)."""

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> torch.Tensor:
        return logits.detach().to(torch.float32).cpu().clone()

    def topk(self, window: int, pos0: int, rows: TopKRows) -> torch.Tensor:
        raise QuantfidError("agreement needs full logits")

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        return None


@dataclass(frozen=True)
class Compared:
    """Per-token metrics against a reference, and optionally the per-token KLD against a
    second model's logits (``cross``: KL(cross || this), token by token)."""

    metrics: TokenMetrics
    cross_kld: np.ndarray | None = None


@dataclass
class VersusReference:
    """A reducer: per-token metrics of a chunk against the kept reference logits.

    ref: per window, (n_score, V) float32 logits of positions ``first .. first + n_score - 1``;
    targets: (n_windows, n_score) next-token ids; cross: another model's kept logits (same
    layout) to take the token-by-token KLD against, or None."""

    ref: list[torch.Tensor]
    targets: np.ndarray
    first: int
    cross: list[torch.Tensor] | None = None

    def full(self, window: int, pos0: int, logits: torch.Tensor) -> Compared:
        lo = pos0 - self.first
        hi = lo + logits.shape[0]
        x = logits.detach().cpu()
        m = token_metrics(self.ref[window][lo:hi], x, self.targets[window, lo:hi], extras=False)
        if self.cross is None:
            return Compared(m)
        return Compared(m, token_metrics(self.cross[window][lo:hi], x, extras=False).kld)

    def topk(self, window: int, pos0: int, rows: TopKRows) -> Compared:
        raise QuantfidError("agreement needs full logits")

    def wanted_ids(self, window: int, pos0: int, n: int) -> np.ndarray | None:
        return None


@torch.inference_mode()
def module_score_windows(module: torch.nn.Module, ids: np.ndarray, start: int, stop: int,
                         reducer: Reducer[R]) -> Iterator[tuple[int, R]]:
    """Teacher-force each window (n, n_ctx) through a transformers causal LM (no cache) and
    hand ``reducer`` the logits of positions ``start .. stop - 1`` in chunks of 256."""
    keep = torch.arange(start, stop)
    for w, row in enumerate(np.asarray(ids, dtype=np.int64)):
        logits = module(input_ids=torch.from_numpy(row)[None, :], use_cache=False,
                        logits_to_keep=keep).logits[0]                  # (stop - start, V)
        for lo in range(0, stop - start, CHUNK):
            yield w, reducer.full(w, start + lo, logits[lo:lo + CHUNK])


def collect(stream: Iterator[tuple[int, Any]], n_windows: int) -> list[Any]:
    """Gather a scorer's (window, result) stream into one list of results per window."""
    out: list[list[Any]] = [[] for _ in range(n_windows)]
    for w, r in stream:
        out[w].append(r)
    return out


def keep_reference(scorer: Any, windows: Windows) -> list[torch.Tensor]:
    """The reference logits of every scored position, per window: ``scorer(ids, start, stop,
    reducer)`` is a backend's ``score_windows`` or :func:`module_score_windows` bound to a module."""
    parts = collect(scorer(windows.ids, windows.first, windows.n_ctx - 1, KeepLogits()),
                    len(windows))
    return [torch.cat(p, dim=0) for p in parts]


def versus(scorer: Any, windows: Windows, ref: list[torch.Tensor],
           cross: list[torch.Tensor] | None = None) -> Compared:
    """Per-token metrics of the model behind ``scorer`` against reference logits ``ref`` (and
    its per-token KLD against ``cross``, when given)."""
    red = VersusReference(ref, windows.targets, windows.first, cross)
    parts = [c for p in collect(scorer(windows.ids, windows.first, windows.n_ctx - 1, red),
                                len(windows)) for c in p]
    cx = None if cross is None else np.concatenate([c.cross_kld for c in parts])
    return Compared(TokenMetrics.concat([c.metrics for c in parts]), cx)


def versus_kept(logits: list[torch.Tensor], windows: Windows,
                ref: list[torch.Tensor]) -> TokenMetrics:
    """Per-token metrics of kept logits (per window, as :func:`keep_reference` returns them)
    against reference logits ``ref``."""
    return TokenMetrics.concat([token_metrics(r, x, windows.targets[i], extras=False)
                                for i, (r, x) in enumerate(zip(ref, logits, strict=True))])


# ---- the table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgreementRow:
    """One preset: mean KLD (nats) and same top-1 (fraction) measured by llama.cpp and by the
    emulation (and weight-only, or None), and whether the per-tensor types agree. cross_kld /
    cross_kld_weights: mean KLD of llama.cpp's own quant against the emulated / weight-only
    quant, token by token (how closely each reproduces llama.cpp's logits)."""

    recipe: str
    kld_llamacpp: float
    kld_emulated: float
    same_top1_llamacpp: float
    same_top1_emulated: float
    n_tokens: int
    kld_weights: float | None = None
    same_top1_weights: float | None = None
    type_diff: tuple[str, ...] = field(default=())
    draws: tuple[tuple[float, float], ...] = ()
    cross_kld: float | None = None
    cross_kld_weights: float | None = None

    @property
    def ratio(self) -> float:
        """Emulated mean KLD / llama.cpp's."""
        return self.kld_emulated / self.kld_llamacpp

    @property
    def top1_gap_points(self) -> float:
        """|same top-1 emulated - llama.cpp's|, percentage points."""
        return 100.0 * abs(self.same_top1_emulated - self.same_top1_llamacpp)

    def _draws(self) -> np.ndarray:
        """(1 + n_draws, 2): (mean KLD, same top-1) of the emulation, plain run first."""
        return np.array([(self.kld_emulated, self.same_top1_emulated), *self.draws])

    @property
    def ratio_over_draws(self) -> float:
        """The emulation's mean KLD averaged over its rounding draws / llama.cpp's (the plain
        ratio without draws)."""
        return float(self._draws()[:, 0].mean() / self.kld_llamacpp)

    @property
    def ratio_noise(self) -> float | None:
        """The ratio's standard deviation from rounding draws alone (both sides are one draw
        each: sqrt(2) x the emulation's relative draw-to-draw SD), or None without draws."""
        if not self.draws:
            return None
        d = self._draws()[:, 0]
        return float(np.sqrt(2.0) * d.std(ddof=1) / d.mean())

    @property
    def top1_noise_points(self) -> float | None:
        """The same-top-1 gap's standard deviation from rounding draws alone, points."""
        if not self.draws:
            return None
        return float(100 * np.sqrt(2.0) * self._draws()[:, 1].std(ddof=1))

    def ok(self, lo: float = 0.95, hi: float = 1.05, top1_points: float = 0.5) -> bool:
        return lo <= self.ratio <= hi and self.top1_gap_points <= top1_points and not self.type_diff


def perturb_input(module: torch.nn.Module, seed: int, rel: float = 1e-6) -> Any:
    """A new *rounding draw*: scale the input embeddings by (1 + rel x N(0, 1)) (seeded), a
    perturbation of a few float32 ulps, as another summation order would make. Returns the
    hook handle (``.remove()``)."""
    gen = torch.Generator().manual_seed(seed)

    def hook(mod: torch.nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
        return out * (1.0 + rel * noise)

    emb = module.get_input_embeddings()  # type: ignore[operator]
    return emb.register_forward_hook(hook)


def summary(m: TokenMetrics) -> tuple[float, float]:
    """(mean KLD, same top-1 fraction) of per-token metrics."""
    return float(np.mean(m.kld)), float(np.mean(m.same_top1))


@dataclass
class Sides:
    """Everything a preset is measured against: the torch reference ``module`` and a working
    copy ``work`` that recipes are applied to, the windows, the F32 GGUF, and the reference
    logits as llama.cpp, the ggml-cpu emulation and (optionally) the weight-only path see them.
    ``ref_kld``: mean KLD of the emulated reference against llama.cpp's (the numerics floor)."""

    module: torch.nn.Module
    work: torch.nn.Module
    windows: Windows
    workdir: Path
    reference_gguf: Path
    llamacpp_ref: list[torch.Tensor]
    emulated_ref: list[torch.Tensor]
    weights_ref: list[torch.Tensor] | None
    ref_kld: float
    threads: int | None = None


def prepare(module: torch.nn.Module, windows: Windows, workdir: str | Path, *,
            metadata_gguf: str | Path | None = None, tokenizer_gguf: str | Path | None = None,
            weights: bool = True, threads: int | None = None) -> Sides:
    """Export the reference (:func:`export_reference`: metadata from ``metadata_gguf``, or the
    tokenizer from ``tokenizer_gguf``), score it with llama.cpp, under ggml-cpu and
    (``weights``) under weight-only numerics. ``module`` must be a float32 Llama."""
    import copy
    import functools

    from quantfid.backends.llamacpp import LlamaCppBackend
    from quantfid.quantize.numerics import apply_numerics

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    ref_gguf = export_reference(module, wd / "reference-F32.gguf", metadata_gguf, tokenizer_gguf)
    be = LlamaCppBackend(ref_gguf, n_ctx=windows.n_ctx, role="reference", threads=threads)
    try:
        lc_ref = keep_reference(be.score_windows, windows)
    finally:
        be.close()
    score = functools.partial(module_score_windows, module)
    with apply_numerics(module, None, "ggml-cpu"):
        emu_ref = keep_reference(score, windows)
    w_ref = keep_reference(score, windows) if weights else None
    floor = float(np.mean(versus_kept(emu_ref, windows, lc_ref).kld))
    return Sides(module=module, work=copy.deepcopy(module), windows=windows, workdir=wd,
                 reference_gguf=ref_gguf, llamacpp_ref=lc_ref, emulated_ref=emu_ref,
                 weights_ref=w_ref, ref_kld=floor, threads=threads)


def _llamacpp_side(sides: Sides, recipe: Recipe, shape: ModelShape,
                   keep_file: bool) -> tuple[list[str], list[torch.Tensor]]:
    """llama.cpp's own file of ``recipe``: its type differences from quantfid's type map and
    its logits on the windows."""
    from quantfid.backends.llamacpp import LlamaCppBackend
    from quantfid.quantize.gguftypes import gguf_types

    path = llamacpp_quantize(sides.reference_gguf, sides.workdir / f"{recipe.name}.gguf",
                             recipe, sides.threads)
    try:
        diff = type_differences(recipe.type_map(shape), gguf_types(path))
        be = LlamaCppBackend(path, n_ctx=sides.windows.n_ctx, threads=sides.threads)
        try:
            return diff, keep_reference(be.score_windows, sides.windows)
        finally:
            be.close()
    finally:
        if not keep_file:
            path.unlink(missing_ok=True)


def measure_preset(sides: Sides, recipe: Recipe, shape: ModelShape, keep_file: bool = False,
                   draws: int = 0) -> AgreementRow:
    """One row of the table: ``recipe`` quantized by llama.cpp and measured there, and applied
    in torch and measured under ggml-cpu (and weight-only when the sides have it). draws: also
    measure the emulation under that many more rounding draws (:func:`perturb_input`) for the
    draw-to-draw spread and mean of its KLD and same top-1."""
    import functools

    from quantfid.quantize.apply import quantize_model
    from quantfid.quantize.numerics import apply_numerics

    w = sides.windows
    diff, lc_q = _llamacpp_side(sides, recipe, shape, keep_file)
    kld_lc, top_lc = summary(versus_kept(lc_q, w, sides.llamacpp_ref))
    rep = quantize_model(sides.work, recipe, source=sides.module, progress=False, shape=shape)
    score = functools.partial(module_score_windows, sides.work)
    with apply_numerics(sides.work, rep.types, "ggml-cpu"):
        emu = versus(score, w, sides.emulated_ref, cross=lc_q)
        extra = []
        for seed in range(1, draws + 1):
            hook = perturb_input(sides.work, seed)
            try:
                extra.append(summary(versus(score, w, sides.emulated_ref).metrics))
            finally:
                hook.remove()
    kld_emu, top_emu = summary(emu.metrics)
    wo = None if sides.weights_ref is None else versus(score, w, sides.weights_ref, cross=lc_q)
    kld_w, top_w = summary(wo.metrics) if wo is not None else (None, None)
    return AgreementRow(
        recipe=recipe.name, kld_llamacpp=kld_lc, kld_emulated=kld_emu,
        same_top1_llamacpp=top_lc, same_top1_emulated=top_emu, n_tokens=w.n_tokens,
        kld_weights=kld_w, same_top1_weights=top_w, type_diff=tuple(diff),
        draws=tuple(extra),
        cross_kld=_mean(emu.cross_kld),
        cross_kld_weights=None if wo is None else _mean(wo.cross_kld))


def _mean(x: np.ndarray | None) -> float | None:
    return None if x is None else float(np.mean(x))
