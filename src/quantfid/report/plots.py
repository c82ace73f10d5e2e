"""The report's plots, drawn with matplotlib's Agg backend into PNG bytes.

Each function takes plain arrays (already pulled out of the analysis result by
``quantfid.report.view``) and returns a ``Plot`` (PNG bytes and pixel size); none of them
reads files or the workspace.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

DPI = 100


@dataclass(frozen=True)
class Plot:
    png: bytes = field(repr=False)
    width: int
    height: int


@dataclass(frozen=True)
class Panel:
    """One fidelity variant against one score over the cohort.

    x: the variant per quant; y: the score per quant (fraction); y_low / y_high its CI
    (None when unknown); silent: True for members of the silent zone; ref_score: the
    reference's score (drawn as a line); title: variant name and the rho it gives;
    floor: the noise floor of the variant (a vertical dotted line), None when not measured.
    """

    title: str
    x: Sequence[float]
    y: Sequence[float]
    silent: Sequence[bool]
    y_low: Sequence[float] | None = None
    y_high: Sequence[float] | None = None
    ref_score: float | None = None
    xlabel: str = ""
    ylabel: str = "score"
    floor: float | None = None


def _save(fig: Figure) -> Plot:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    w, h = fig.get_size_inches() * DPI
    plt.close(fig)
    return Plot(png=buf.getvalue(), width=round(w), height=round(h))


def _finite(v: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else float(x) for x in v], dtype=float)


def fidelity_vs_score(panels: Sequence[Panel], ncols: int = 3) -> Plot:
    """Small multiples: each variant vs score, silent zone shaded, score CIs as error bars.

    The shaded vertical band spans the silent-zone quants' range of the variant; the
    dashed line is the reference's score; the dotted vertical line the noise floor.
    """
    n = max(len(panels), 1)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, p in zip(axes.flat, panels, strict=False):
        x, y = _finite(p.x), _finite(p.y)
        s = np.asarray(p.silent, dtype=bool)
        ok = np.isfinite(x) & np.isfinite(y)
        if (s & ok).any():
            ax.axvspan(np.nanmin(x[s & ok]), np.nanmax(x[s & ok]), color="#9ecae1", alpha=0.35,
                       lw=0, label="silent zone")
        if p.y_low is not None and p.y_high is not None:
            lo, hi = _finite(p.y_low), _finite(p.y_high)
            m = ok & np.isfinite(lo) & np.isfinite(hi)
            ax.errorbar(x[m], y[m], yerr=[np.maximum(y[m] - lo[m], 0), np.maximum(hi[m] - y[m], 0)],
                        fmt="none", ecolor="#999", elinewidth=0.8, capsize=2)
        ax.scatter(x[ok & ~s], y[ok & ~s], s=18, color="#d6604d", label="outside", zorder=3)
        ax.scatter(x[ok & s], y[ok & s], s=18, color="#2166ac", label="silent", zorder=3)
        if p.ref_score is not None and math.isfinite(p.ref_score):
            ax.axhline(p.ref_score, color="k", ls="--", lw=0.8, label="reference")
        if p.floor is not None and math.isfinite(p.floor):
            ax.axvline(p.floor, color="#7b3294", ls=":", lw=1.2, label="noise floor")
        if ok.any() and np.nanmin(x[ok]) > 0 and np.nanmax(x[ok]) / np.nanmin(x[ok]) > 50:
            ax.set_xscale("log")
        ax.set_title(p.title, fontsize=9)
        ax.set_xlabel(p.xlabel or p.title.split(" ")[0], fontsize=8)
        ax.set_ylabel(p.ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return _save(fig)


def heatmap(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
            vmin: float = -1.0, vmax: float = 1.0, cbar_label: str = "Spearman rho") -> Plot:
    """A rows x cols heatmap (NaN cells blank) with each value written in its cell."""
    v = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(cols) + 3.5), max(2.5, 0.28 * len(rows) + 1.4)))
    im = ax.imshow(np.ma.masked_invalid(v), cmap="RdBu_r", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=list(cols), fontsize=7, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows), fontsize=7)
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            if np.isfinite(v[i, j]):
                ax.text(j, i, f"{v[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if abs(v[i, j]) > 0.6 else "black")
    fig.colorbar(im, ax=ax, label=cbar_label, shrink=0.8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig)


def volume_direction(kld: Sequence[float], volume: Sequence[float], direction: Sequence[float | None],
                     silent: Sequence[bool], kld_label: str = "KLD mean (nats)") -> Plot:
    """Two panels: flip volume vs KLD, and flip direction f = G/(G+L) vs KLD (0.5 = coin toss)."""
    x, v, f = _finite(kld), _finite(volume), _finite(direction)
    s = np.asarray(silent, dtype=bool)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, y, lab in ((a1, v, "volume G + L (flip rate)"), (a2, f, "direction f = G / (G + L)")):
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok & ~s], y[ok & ~s], s=18, color="#d6604d", label="outside silent zone")
        ax.scatter(x[ok & s], y[ok & s], s=18, color="#2166ac", label="silent zone")
        if ok.any() and np.nanmin(x[ok]) > 0 and np.nanmax(x[ok]) / np.nanmin(x[ok]) > 50:
            ax.set_xscale("log")
        ax.set_xlabel(kld_label, fontsize=8)
        ax.set_ylabel(lab, fontsize=8)
        ax.tick_params(labelsize=7)
    a2.axhline(0.5, color="k", ls="--", lw=0.8)
    a2.set_ylim(-0.05, 1.05)
    a1.legend(fontsize=7)
    a1.set_title("volume: how much the quant disagrees", fontsize=9)
    a2.set_title("direction: whether the flips help or hurt", fontsize=9)
    fig.tight_layout()
    return _save(fig)


def forest(labels: Sequence[str], est: Sequence[float | None], low: Sequence[float | None],
           high: Sequence[float | None], null: float, xlabel: str, title: str,
           log: bool = False) -> Plot:
    """Point estimates with CIs, one row per label, and a vertical line at the null value."""
    e, lo, hi = _finite(est), _finite(low), _finite(high)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(7, max(2.2, 0.22 * n + 1.2)))
    yy = np.arange(n)[::-1]
    m = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(e)
    ax.errorbar(e[m], yy[m], xerr=[np.maximum(e[m] - lo[m], 0), np.maximum(hi[m] - e[m], 0)],
                fmt="o", ms=3.5, color="#2166ac", ecolor="#7a9cc6", capsize=2)
    k = np.isfinite(e) & ~m
    ax.plot(e[k], yy[k], "o", ms=3.5, color="#2166ac")
    ax.axvline(null, color="k", ls="--", lw=0.8)
    ax.set_yticks(yy, labels=list(labels), fontsize=7)
    if log and np.all(e[np.isfinite(e)] > 0):
        ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    return _save(fig)


def histogram(values: Sequence[float], xlabel: str, title: str, lines: dict[str, float] | None = None,
              bins: int = 20, xlim: tuple[float, float] | None = None) -> Plot:
    """A histogram of ``values`` with labelled vertical reference lines."""
    v = _finite(values)
    v = v[np.isfinite(v)]
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    if v.size:
        ax.hist(v, bins=bins, range=xlim, color="#92c5de", edgecolor="#2166ac")
    styles = ["--", "-", ":", "-."]
    for i, (lab, x) in enumerate((lines or {}).items()):
        ax.axvline(x, color="k", ls=styles[i % len(styles)], lw=0.9, label=lab)
    if lines:
        ax.legend(fontsize=7)
    if xlim:
        ax.set_xlim(*xlim)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig)
