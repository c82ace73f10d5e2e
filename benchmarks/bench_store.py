"""Reference stores: bytes per token and write / read+metrics throughput.

Compares the compact store (top-k + tail bucket + tail sample), the full store (float32,
float16) and llama.cpp's kld-base encoding (2 V + 8 bytes per token). The compact store's
size depends on the model's distributions, so pass real logits for real figures:

    python benchmarks/bench_store.py --ref R.npy --quant Q.npy   # (windows, ctx, V) or (T, V)
    python benchmarks/bench_store.py --real                      # embedded model, our prose
    python benchmarks/bench_store.py                             # synthetic, V = 49152

Prints one JSON object (also the mean-KLD relative error of the compact store against the
full float32 store, when a quant is given).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from quantfid.store.compact import CompactStore, CompactStoreWriter
from quantfid.store.full import FullStore, FullStoreWriter
from quantfid.store.llamacpp import KldBaseWriter


def _real(n_windows: int, ctx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import copy
    import os

    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    lm = load_hf(None, device="cpu")
    text = (Path(__file__).parents[1] / "tests" / "store" / "fixtures" / "prose.txt").read_text()
    ids = lm.tokenizer(text, return_tensors="np")["input_ids"][0]
    toks = ids[: n_windows * ctx].reshape(n_windows, ctx).astype(np.int64)
    q = copy.deepcopy(lm.module)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, torch.nn.Linear):
                s = m.weight.abs().amax(dim=1, keepdim=True) / 127
                m.weight.copy_(torch.round(m.weight / s) * s)
        ref = lm.module(torch.from_numpy(toks)).logits.float().numpy()
        qq = q(torch.from_numpy(toks)).logits.float().numpy()
    return ref, qq, toks


def _synthetic(n_windows: int, ctx: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = (rng.standard_t(3, size=(n_windows, ctx, vocab)) * 2.5).astype(np.float32)
    q = (ref + rng.normal(size=ref.shape) * 0.1).astype(np.float32)
    return ref, q, rng.integers(0, vocab, size=(n_windows, ctx))


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", help=".npy reference logits (windows, ctx, V)")
    ap.add_argument("--quant", help=".npy quant logits, same shape")
    ap.add_argument("--tokens", help=".npy window token ids (windows, ctx)")
    ap.add_argument("--real", action="store_true", help="run the embedded model (slow)")
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if args.ref:
        ref = np.load(args.ref)
        q = np.load(args.quant) if args.quant else ref
        toks = (np.load(args.tokens) if args.tokens
                else np.zeros(ref.shape[:2], np.int64))
    elif args.real:
        ref, q, toks = _real(args.windows, args.ctx)
    else:
        ref, q, toks = _synthetic(args.windows, args.ctx, args.vocab)
    n_win, ctx, vocab = ref.shape
    n_tok = n_win * (ctx - 1)  # scoring "all"
    res: dict[str, Any] = {"n_tokens": n_tok, "vocab": vocab, "llamacpp_bytes_per_token":
                           2 * (2 * ((vocab + 1) // 2) + 4)}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)

        def write_full(dtype: str) -> FullStore:
            w = FullStoreWriter(root / f"full-{dtype}", model_id="m", tokenizer_id="t",
                                vocab_size=vocab, ctx=ctx, scoring="all", dtype=dtype,
                                overwrite=True)
            for i in range(n_win):
                w.append(ref[i, :-1], toks[i])
            return w.close()

        def write_compact() -> CompactStore:
            w = CompactStoreWriter(root / "compact", model_id="m", tokenizer_id="t",
                                   vocab_size=vocab, ctx=ctx, scoring="all", overwrite=True,
                                   rng=np.random.default_rng(0))
            for i in range(n_win):
                w.append(ref[i, :-1], toks[i])
            return w.close()

        def write_llamacpp() -> None:
            # same rows, llama.cpp's encoding (its own scoring would keep half of each window)
            w = KldBaseWriter(root / "b.kld", np.zeros((n_tok // 7 + 1, 16), np.int32), vocab)
            for lo in range(0, (n_tok // 7 + 1) * 7, 7):
                rows = ref[:, :-1].reshape(-1, vocab)[lo:lo + 7]
                w.append(rows if len(rows) == 7 else np.resize(rows, (7, vocab)))
            w.close()

        for name, fn in (("full_f32", lambda: write_full("float32")),
                         ("full_f16", lambda: write_full("float16")),
                         ("compact", write_compact), ("llamacpp", write_llamacpp)):
            res[f"write_tok_s_{name}"] = n_tok / _median_time(fn, args.repeat)
        full, comp = FullStore(root / "full-float32"), CompactStore(root / "compact")
        res["bytes_per_token_full_f32"] = 4 * vocab
        res["bytes_per_token_full_f16"] = 2 * vocab
        res["bytes_per_token_compact"] = comp.nbytes() / n_tok
        res["compact_vs_llamacpp_x"] = res["llamacpp_bytes_per_token"] / res["bytes_per_token_compact"]
        res["compact_mean_k"] = float(np.mean(comp.counts))
        res["compact_mean_tail_mass"] = float(comp.tail_mass().mean())
        for name, st in (("full_f32", full), ("compact", comp)):
            res[f"read_metrics_tok_s_{name}"] = n_tok / _median_time(
                lambda st=st: [st.metrics_against(i, q[i, :-1]) for i in range(n_win)],
                args.repeat)
        kf = np.concatenate([full.metrics_against(i, q[i, :-1]).kld for i in range(n_win)])
        kc = np.concatenate([comp.metrics_against(i, q[i, :-1]).kld for i in range(n_win)])
        res["kld_mean_full"] = float(kf.mean())
        res["kld_mean_compact"] = float(kc.mean())
        res["kld_mean_rel_err"] = float(kc.mean() / kf.mean() - 1) if kf.mean() > 0 else None
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
