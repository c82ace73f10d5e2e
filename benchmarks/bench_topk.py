"""Fidelity from top-k: the error of the mean KLD when the quant returns only its top K.

The embedded model (float32) is the reference; quants are built from it with
``quantfid.quantize.quantize_model`` (weights numerics). Per quant, the reference's compact
rows (the compact store's own writer: adaptive top-k <= 256, tail mass, 32 tail samples) and
the quant's top-K rows with the next token's log-prob (what vLLM returns) give

- ``naive``: the obvious estimator (both sides' top K, the rest spread evenly; see
  ``quantfid.metrics.topk.naive_topk_kld``),
- ``topk``: ``quantfid.metrics.topk.topk_fidelity`` (estimate and ``kld_bound_low``),
- ``chosen``: the same with the quant's log-probs of the reference's kept ids and tail
  samples (what SGLang's ``token_ids_logprob`` returns),

against the exact mean KLD from the full distributions (``quantfid.metrics.token_metrics``).
Prints, per K, the relative error of the mean per quant, the Spearman correlation of the
quants' ranking with the exact one (all quants, and the near-lossless ones: exact mean KLD
below ``--lossless``), and the smallest K whose worst error is within 10 % and 1 %:

    python benchmarks/bench_topk.py                      # 3 x 256-token windows, 8 quants
    python benchmarks/bench_topk.py --windows 1 --quants Q8_0,Q4_0 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.backends.base import TopKRows
from quantfid.metrics import token_metrics
from quantfid.metrics.topk import naive_topk_kld, topk_fidelity
from quantfid.store.compact import CompactStore, CompactStoreWriter
from quantfid.store.rows import CompactRows

QUANTS = "Q8_0,rtn-w8g64-sym,Q6_K,Q4_K_M,Q4_0,rtn-w4g64-asym,Q2_K,rtn-w3g64-asym"
KS = "5,20,64,256,1024"


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))


def topk_rows(lq: np.ndarray, k: int, targets: np.ndarray,
              chosen: np.ndarray | None = None) -> TopKRows:
    """A server's answer: top k ids and log-probs (float32, as sent), the next token's."""
    n = len(lq)
    part = np.argpartition(-lq, k - 1, axis=1)[:, :k]
    f32 = lq.astype(np.float32).astype(np.float64)
    c_lp = None if chosen is None else np.where(
        chosen >= 0, np.take_along_axis(f32, np.maximum(chosen, 0), axis=1), np.nan)
    return TopKRows(part, np.take_along_axis(f32, part, axis=1), f32[np.arange(n), targets],
                    chosen, c_lp)


def store_rows(store: CompactStore, w: int) -> CompactRows:
    n = store.n_scored
    a, b = w * n, (w + 1) * n
    o, so = store.offsets, store.tail_offsets
    return CompactRows(np.asarray(store.counts[a:b]), np.asarray(store.ids[o[a]:o[b]], np.int64),
                       np.asarray(store.values[o[a]:o[b]]), np.asarray(store.log_tail[a:b]),
                       np.asarray(store.target_logp[a:b]), np.asarray(store.tail_counts[a:b]),
                       np.asarray(store.tail_ids[so[a]:so[b]], np.int64),
                       np.asarray(store.tail_values[so[a]:so[b]]))


def chosen_ids(rows: CompactRows) -> np.ndarray:
    """(n, M) the reference's kept ids and tail samples per position, -1 padded."""
    o, so = rows.offsets, rows.tail_offsets
    per = [np.concatenate([rows.ids[o[i]:o[i + 1]], rows.tail_ids[so[i]:so[i + 1]]])
           for i in range(len(rows))]
    out = np.full((len(per), max(len(p) for p in per)), -1, np.int64)
    for i, p in enumerate(per):
        out[i, :len(p)] = p
    return out


def setup(n_windows: int, ctx: int) -> tuple[Any, np.ndarray]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf
    from quantfid.corpus import load_corpus, make_windows, tokenize

    lm = load_hf(None, device="cpu")
    toks = tokenize(load_corpus("prose").text, lm.tokenizer)
    win = make_windows(toks, ctx, None, "llamacpp", max_chunks=n_windows)
    return lm, win.ids


def forward(module: Any, ids: np.ndarray, first: int) -> np.ndarray:
    """(windows, scored, V) float64 log-probs of positions first .. ctx - 2."""
    import torch

    out = []
    with torch.no_grad():
        for row in ids:
            lg = module(torch.from_numpy(row[None])).logits[0, first:-1].double()
            out.append(torch.log_softmax(lg, dim=-1).numpy())
    return np.stack(out)


def evaluate(ref: list[CompactRows], lq: np.ndarray, ids: np.ndarray, first: int,
             ref_lp: np.ndarray, ks: list[int]) -> dict[str, Any]:
    vocab = lq.shape[-1]
    exact, naive, est, low, chosen = [], {k: [] for k in ks}, {k: [] for k in ks}, \
        {k: [] for k in ks}, []
    for w, rows in enumerate(ref):
        t = ids[w, first + 1:]
        exact.append(token_metrics(ref_lp[w], lq[w], t, extras=False).kld)
        for k in ks:
            q = topk_rows(lq[w], k, t)
            res = topk_fidelity(rows, q, t)
            est[k].append(res.metrics.kld)
            low[k].append(res.kld_bound_low)
            naive[k].append(naive_topk_kld(topk_rows(ref_lp[w], k, t), q, vocab))
        chosen.append(topk_fidelity(rows, topk_rows(lq[w], 5, t, chosen_ids(rows)),
                                    t).metrics.kld)
    m = float(np.concatenate(exact).mean())
    rel = {name: {k: float(np.concatenate(d[k]).mean()) / m - 1 for k in ks}
           for name, d in (("naive", naive), ("topk", est), ("low", low))}
    return {"exact": m, **rel, "chosen": float(np.concatenate(chosen).mean()) / m - 1}


def cached(cache: Path | None, key: str, make: Any) -> np.ndarray:
    """``make()``'s log-probs rounded to float32 (as a server sends them), kept as .npy under
    ``cache`` when given."""
    if cache is None:
        return np.asarray(make()).astype(np.float32).astype(np.float64)
    path = cache / f"{key}.npy"
    if path.exists():
        return np.load(path).astype(np.float64)
    out = np.asarray(make()).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out.astype(np.float64)


def spearman(exact: list[float], est: list[float]) -> float | None:
    from scipy.stats import spearmanr

    return float(spearmanr(exact, est).statistic) if len(exact) > 2 else None


def summary(res: dict[str, dict[str, Any]], ks: list[int], lossless: float) -> dict[str, Any]:
    names = list(res)
    groups = {"all": names, "near-lossless": [n for n in names if res[n]["exact"] < lossless]}
    out: dict[str, Any] = {}
    for k in ks:
        row: dict[str, Any] = {}
        for g, members in groups.items():
            ex = [res[n]["exact"] for n in members]
            for est in ("naive", "topk"):
                vals = [res[n]["exact"] * (1 + res[n][est][k]) for n in members]
                row[f"spearman_{est}_{g}"] = spearman(ex, vals)
                row[f"max_abs_err_{est}_{g}"] = max((abs(res[n][est][k]) for n in members),
                                                    default=None)
        out[str(k)] = row
    usable = [n for n in names if res[n]["exact"] < 1.0]  # broken quants (> 1 nat) aside
    need: dict[str, Any] = {}
    for tol in (0.10, 0.01):
        for g, members in (("all", names), ("below 1 nat", usable)):
            ok = [k for k in ks if max(abs(res[n]["topk"][k]) for n in members) <= tol]
            need[f"{tol:.0%} ({g})"] = min(ok) if ok else None
    return {"per_k": out, "k_needed": need}


def table(res: dict[str, dict[str, Any]], ks: list[int], lossless: float) -> str:
    lines = ["| quant | exact mean KLD | " + " | ".join(f"K={k} naive / ours / low"
                                                      for k in ks) + " | chosen ids |",
             "|---|---|" + "---|" * len(ks) + "---|"]
    order = sorted(res, key=lambda n: res[n]["exact"])
    for near in (True, False):
        for n in order:
            r = res[n]
            if (r["exact"] < lossless) != near:
                continue
            cells = [f"{1 + r['naive'][k]:.2f}x / {1 + r['topk'][k]:.3f}x / "
                     f"{1 + r['low'][k]:.2f}x" for k in ks]
            lines.append(f"| {n}{' (near-lossless)' if near else ''} | {r['exact']:.5f} | "
                         + " | ".join(cells) + f" | {1 + r['chosen']:.4f}x |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--quants", default=QUANTS)
    ap.add_argument("--ks", default=KS)
    ap.add_argument("--lossless", type=float, default=0.01,
                    help="exact mean KLD below which a quant counts as near-lossless")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--cache", help="directory keeping the log-probs between runs (.npy)")
    args = ap.parse_args()
    import torch

    from quantfid.quantize import get_recipe
    from quantfid.quantize.apply import quantize_model

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    ks = [int(k) for k in args.ks.split(",")]
    t0 = time.perf_counter()
    lm, ids = setup(args.windows, args.ctx)
    first = args.ctx // 2
    cache = Path(args.cache) if args.cache else None
    ref_lp = cached(cache, f"ref-{args.windows}x{args.ctx}", lambda: forward(lm.module, ids, first))
    with tempfile.TemporaryDirectory() as tmp:
        w = CompactStoreWriter(Path(tmp) / "ref", model_id="ref", tokenizer_id="t",
                               vocab_size=ref_lp.shape[-1], ctx=args.ctx, scoring="llamacpp",
                               rng=np.random.default_rng(0))
        for i in range(len(ids)):
            w.append(ref_lp[i], ids[i])
        store = w.close()
        ref = [store_rows(store, i) for i in range(len(ids))]
        res: dict[str, dict[str, Any]] = {}
        for name in args.quants.split(","):
            def quant_lp(name: str = name) -> np.ndarray:
                q = copy.deepcopy(lm.module)
                quantize_model(q, get_recipe(name), progress=False)
                return forward(q, ids, first)

            lq = cached(cache, f"{name}-{args.windows}x{args.ctx}", quant_lp)
            res[name] = evaluate(ref, lq, ids, first, ref_lp, ks)
            print(f"{name}: exact {res[name]['exact']:.5f}  ours " + "  ".join(
                f"K={k} {res[name]['topk'][k]:+.3f}" for k in ks), flush=True)
    out = {"windows": args.windows, "ctx": args.ctx, "scored_tokens": int(ref_lp.shape[0]
                                                                          * ref_lp.shape[1]),
           "quants": res, **summary(res, ks, args.lossless),
           "seconds": round(time.perf_counter() - t0, 1)}
    print()
    print(table(res, ks, args.lossless))
    print()
    print(json.dumps({k: out[k] for k in ("per_k", "k_needed", "scored_tokens", "seconds")},
                     indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
