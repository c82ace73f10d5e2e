"""``quantfid stats``: fidelity statistics of saved quant logits against a saved reference.

--ref: logits or log-probs (T, V) as .npy or .safetensors, a llama.cpp kld-base file
(``llama-perplexity --kl-divergence-base``), or a quantfid reference store directory.
--quant: the quant's logits or log-probs for the same scored tokens, (T, V).
--targets: (T,) next-token ids (.npy or .safetensors); taken from the file for a kld-base
file or a store. With only --ref a kld-base file, prints its n_tokens and ppl_ref (= "Mean
PPL(base)"). --json prints one object holding every STATS_KEYS key (null where not
computable); otherwise a readable table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.commands.argtypes import nonneg_int
from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.metrics.types import STATS_KEYS, TokenMetrics

_ARRAY_KEYS = ("logits", "logprobs", "log_probs", "logp", "targets", "tokens")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="fidelity statistics from saved logits / log-probs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True,
                   help="reference: .npy/.safetensors (T, V), a llama.cpp kld-base file, "
                        "or a quantfid store directory")
    p.add_argument("--quant", help="quant logits or log-probs, .npy/.safetensors (T, V)")
    p.add_argument("--targets", help="next-token ids (T,), .npy/.safetensors")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--n-boot", type=nonneg_int, default=1000,
                   help="bootstrap resamples for the CIs (default 1000; 0 = none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.set_defaults(func=run)


def load_array(path: str, what: str) -> np.ndarray:
    """A .npy or .safetensors array (memory-mapped, checked against the file's size: see
    :mod:`quantfid.arrayfile`); clear errors for anything else."""
    from quantfid.arrayfile import load_npy, load_safetensors

    p = Path(path)
    if not p.is_file():
        raise QuantfidError(f"{what}: no such file: {path}"
                            + (" (a directory; give a file)" if p.is_dir() else ""))
    try:
        if p.suffix == ".npy":
            return load_npy(p)
        if p.suffix == ".safetensors":
            return load_safetensors(p, _ARRAY_KEYS)
    except FormatError as e:
        raise FormatError(f"{what}: {e}") from None
    raise FormatError(f"{what}: {path}: expected a .npy or .safetensors file")


def _is_kld_base(path: str) -> bool:
    from quantfid.store.llamacpp import MAGIC

    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        return fh.read(8) == MAGIC


def _check_rows(arr: np.ndarray, what: str, shape: tuple[int, int] | None = None) -> None:
    if arr.ndim != 2 or 0 in arr.shape:
        raise MismatchError(f"{what}: expected a non-empty (tokens, vocab) array, got shape "
                            f"{arr.shape}")
    if shape is not None and arr.shape != shape:
        raise MismatchError(f"{what}: expected shape {shape}, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise QuantfidError(f"{what}: expected floating point logits, got dtype {arr.dtype}")


def _targets(args: argparse.Namespace, n: int, n_vocab: int) -> np.ndarray | None:
    if not args.targets:
        return None
    t = np.asarray(load_array(args.targets, "--targets"))
    if t.shape != (n,):
        raise MismatchError(f"--targets: expected shape ({n},) to match the logits, got {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise QuantfidError(f"--targets: expected integer token ids, got dtype {t.dtype}")
    t = t.astype(np.int64)
    bad = np.flatnonzero((t < 0) | (t >= n_vocab))
    if len(bad):
        raise QuantfidError(f"--targets: token id {t[bad[0]]} at position {bad[0]} is outside "
                            f"the vocabulary [0, {n_vocab})")
    return t


def _from_kld_base(args: argparse.Namespace) -> tuple[TokenMetrics | None, np.ndarray | None,
                                                       dict[str, Any]]:
    from quantfid.store.llamacpp import KldBase

    kb = KldBase(args.ref)
    if not args.quant:
        ppl, unc = kb.ppl_base()
        return None, None, {"n_tokens": kb.n_tokens, "ppl_ref": ppl, "ppl_ref_se": unc}
    q = load_array(args.quant, "--quant")
    _check_rows(q, "--quant", (kb.n_tokens, kb.n_vocab))
    tgt = _targets(args, kb.n_tokens, kb.n_vocab)
    parts = []
    for c in range(kb.n_chunk):
        s = slice(c * kb.n_scored, (c + 1) * kb.n_scored)
        parts.append(kb.metrics_against(c, q[s], None if tgt is None else tgt[s]))
    return TokenMetrics.concat(parts), np.repeat(np.arange(kb.n_chunk), kb.n_scored), {}


def _from_store(args: argparse.Namespace) -> tuple[TokenMetrics, np.ndarray]:
    from quantfid.store.compact import CompactStore
    from quantfid.store.full import FullStore
    from quantfid.store.meta import StoreMeta

    meta = StoreMeta.load(args.ref)
    store: FullStore | CompactStore = (FullStore(args.ref) if meta.kind == "full"
                                       else CompactStore(args.ref))
    if not args.quant:
        raise QuantfidError("--quant is required with a quantfid store as --ref")
    q = load_array(args.quant, "--quant")
    n = store.n_windows * store.n_scored
    _check_rows(q, "--quant", (n, meta.vocab_size))
    tgt = _targets(args, n, meta.vocab_size)
    parts = []
    for w in range(store.n_windows):
        s = slice(w * store.n_scored, (w + 1) * store.n_scored)
        parts.append(store.metrics_against(w, q[s], None if tgt is None else tgt[s]))
    return TokenMetrics.concat(parts), np.repeat(np.arange(store.n_windows), store.n_scored)


def _from_arrays(args: argparse.Namespace) -> TokenMetrics:
    from quantfid.metrics.token import token_metrics

    ref = load_array(args.ref, "--ref")
    _check_rows(ref, "--ref")
    if not args.quant:
        raise QuantfidError("--quant is required unless --ref is a llama.cpp kld-base file")
    q = load_array(args.quant, "--quant")
    _check_rows(q, "--quant", ref.shape)
    return token_metrics(ref, q, _targets(args, ref.shape[0], ref.shape[1]))


def compute(args: argparse.Namespace) -> dict[str, Any]:
    """The statistics as a dict holding every STATS_KEYS key (None where not computable)."""
    from quantfid.metrics.summary import summarize

    ref = Path(args.ref)
    windows: np.ndarray | None = None
    if not ref.exists():
        raise QuantfidError(f"--ref: no such file or directory: {args.ref}")
    if ref.is_dir():
        tm, windows = _from_store(args)
    elif _is_kld_base(args.ref):
        tm_opt, windows, only = _from_kld_base(args)
        if tm_opt is None:
            return {**dict.fromkeys(STATS_KEYS), **only}
        tm = tm_opt
    else:
        tm = _from_arrays(args)
    if len(tm) == 0:
        raise QuantfidError("no tokens to score")
    stats = summarize(tm, windows, n_boot=args.n_boot, rng=np.random.default_rng(args.seed))
    out = stats.to_json()
    return {**dict.fromkeys(STATS_KEYS), **out}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, int)):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def table(stats: dict[str, Any]) -> str:
    """A readable two-column table of the STATS_KEYS (with ± where an SE exists)."""
    se = {"kld_mean": "kld_mean_se", "ln_ppl_ratio": "ln_ppl_ratio_se",
          "same_top1": "same_top1_se", "ppl_q": "ppl_q_se", "ppl_ref": "ppl_ref_se"}
    lines = []
    for k in STATS_KEYS:
        if k.endswith("_se") and any(v == k for v in se.values()):
            continue
        s = _fmt(stats.get(k))
        if k in se and stats.get(se[k]) is not None:
            s += f" ± {_fmt(stats[se[k]])}"
        lines.append(f"{k:<16} {s}")
    lo, hi = stats.get("kld_mean_ci_low"), stats.get("kld_mean_ci_high")
    if lo is not None and hi is not None:
        lines.append(f"{'kld_mean 95% CI':<16} [{_fmt(lo)}, {_fmt(hi)}] (block bootstrap)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    stats = compute(args)
    if args.json:
        json.dump(stats, sys.stdout, allow_nan=True)
        sys.stdout.write("\n")
    else:
        print(table(stats))
    return 0
