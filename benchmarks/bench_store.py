"""Reference stores: bytes per token, write / read+metrics throughput, and the compact store's
comparison speed against the model's forward pass.

Part 1 (one vocabulary, ``--vocab`` or the real model's): the compact store (top-k + tail
bucket + tail sample), the full store (float32, float16) and llama.cpp's kld-base encoding
(2 V + 8 bytes per token): bytes per token, write and read+metrics tokens/s, and the compact
store's mean-KLD error against the full float32 store.

Part 2 (``--compare-vocab``, default 49152 and 151936): the compact store's read+compare
tokens/s before (the original numpy implementation, ``tests/store/compact_oracle.py``) and
after (``CompactStore.metrics_against``: the fused numba kernel), and the embedded model's
forward tokens/s (SmolLM2-135M, one window of ``--ctx`` tokens, batch 1, every position's
logits), runs interleaved in this process, medians: the ratio says how much a comparison
adds to a quant's forward pass (after_over_forward_x >= 4: it adds at most a quarter).

With ``--real`` part 1 and the V = 49152 comparison use the embedded model's logits of our
prose (reference: float32; quant: 8-bit per-row RTN), and the output adds the numerics note:
the mean-KLD change from computing the log-softmax in float64 from the float32 logits (now)
instead of taking torch's float32 log-softmax first and re-normalising it (before).

    python benchmarks/bench_store.py --real          # embedded model, our prose (slow)
    python benchmarks/bench_store.py                 # synthetic logits
    python benchmarks/bench_store.py --ref R.npy --quant Q.npy   # (windows, ctx, V)

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.store.compact_oracle
from tests.store.compact_oracle import oracle_metrics_chunked

from quantfid.store.compact import CompactStore, CompactStoreWriter
from quantfid.store.full import FullStore, FullStoreWriter
from quantfid.store.llamacpp import KldBaseWriter

PROSE = Path(__file__).parents[1] / "tests" / "store" / "fixtures" / "prose.txt"


def _model() -> Any:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from quantfid.backends.hf import load_hf

    return load_hf(None, device="cpu")


def _windows(lm: Any, n_windows: int, ctx: int) -> np.ndarray:
    ids = lm.tokenizer(PROSE.read_text(), return_tensors="np")["input_ids"][0]
    return ids[: n_windows * ctx].reshape(n_windows, ctx).astype(np.int64)


def _real(lm: Any, toks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import copy

    import torch

    q = copy.deepcopy(lm.module)
    with torch.no_grad():
        for m in q.modules():
            if isinstance(m, torch.nn.Linear):
                s = m.weight.abs().amax(dim=1, keepdim=True) / 127
                m.weight.copy_(torch.round(m.weight / s) * s)
        ref = lm.module(torch.from_numpy(toks)).logits.float().numpy()
        qq = q(torch.from_numpy(toks)).logits.float().numpy()
    return ref, qq


def _synthetic(n_windows: int, ctx: int, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows as flat as SmolLM2's (the 256-id cap binds, the tail is sampled)."""
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((n_windows, ctx, vocab), dtype=np.float32) * np.float32(2.0)
    q = ref + rng.standard_normal(ref.shape, dtype=np.float32) * np.float32(0.1)
    return ref, q, rng.integers(0, vocab, size=(n_windows, ctx))


def _median_time(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _write_compact(path: Path, ref: np.ndarray, toks: np.ndarray) -> CompactStore:
    n_win, ctx, vocab = ref.shape
    w = CompactStoreWriter(path, model_id="m", tokenizer_id="t", vocab_size=vocab, ctx=ctx,
                           scoring="all", overwrite=True, rng=np.random.default_rng(0))
    for i in range(n_win):
        w.append(ref[i, :-1], toks[i])
    return w.close()


def _write_full(path: Path, ref: np.ndarray, toks: np.ndarray, dtype: str) -> FullStore:
    n_win, ctx, vocab = ref.shape
    w = FullStoreWriter(path, model_id="m", tokenizer_id="t", vocab_size=vocab, ctx=ctx,
                        scoring="all", dtype=dtype, overwrite=True)
    for i in range(n_win):
        w.append(ref[i, :-1], toks[i])
    return w.close()


def _write_llamacpp(path: Path, ref: np.ndarray) -> None:
    # same rows, llama.cpp's encoding (its own scoring would keep half of each window)
    vocab = ref.shape[-1]
    rows_all = ref[:, :-1].reshape(-1, vocab)
    n_chunks = len(rows_all) // 7 + 1
    w = KldBaseWriter(path, np.zeros((n_chunks, 16), np.int32), vocab)
    for lo in range(0, n_chunks * 7, 7):
        rows = rows_all[lo:lo + 7]
        w.append(rows if len(rows) == 7 else np.resize(rows, (7, vocab)))
    w.close()


def stores(root: Path, ref: np.ndarray, q: np.ndarray, toks: np.ndarray,
           repeat: int) -> dict[str, Any]:
    """Part 1: bytes and throughput of every store kind on one set of logits."""
    n_win, ctx, vocab = ref.shape
    n_tok = n_win * (ctx - 1)  # scoring "all"
    res: dict[str, Any] = {"n_tokens": n_tok, "vocab": vocab,
                           "llamacpp_bytes_per_token": 2 * (2 * ((vocab + 1) // 2) + 4)}
    for name, fn in (("full_f32", lambda: _write_full(root / "f32", ref, toks, "float32")),
                     ("full_f16", lambda: _write_full(root / "f16", ref, toks, "float16")),
                     ("compact", lambda: _write_compact(root / "compact", ref, toks)),
                     ("llamacpp", lambda: _write_llamacpp(root / "b.kld", ref))):
        res[f"write_tok_s_{name}"] = n_tok / _median_time(fn, repeat)
    full, comp = FullStore(root / "f32"), CompactStore(root / "compact")
    res["bytes_per_token_full_f32"] = 4 * vocab
    res["bytes_per_token_full_f16"] = 2 * vocab
    res["bytes_per_token_compact"] = comp.nbytes() / n_tok
    res["compact_vs_llamacpp_x"] = res["llamacpp_bytes_per_token"] / res["bytes_per_token_compact"]
    res["compact_mean_k"] = float(np.mean(comp.counts))
    res["compact_mean_tail_mass"] = float(comp.tail_mass().mean())
    for name, st in (("full_f32", full), ("compact", comp)):
        res[f"read_metrics_tok_s_{name}"] = n_tok / _median_time(
            lambda st=st: [st.metrics_against(i, q[i, :-1]) for i in range(n_win)], repeat)
    kf = np.concatenate([full.metrics_against(i, q[i, :-1]).kld for i in range(n_win)])
    kc = np.concatenate([comp.metrics_against(i, q[i, :-1]).kld for i in range(n_win)])
    res["kld_mean_full"] = float(kf.mean())
    res["kld_mean_compact"] = float(kc.mean())
    res["kld_mean_rel_err"] = float(kc.mean() / kf.mean() - 1) if kf.mean() > 0 else None
    return res


def compare_speed(root: Path, ref: np.ndarray, q: np.ndarray, toks: np.ndarray, repeat: int,
                  forward: Any) -> dict[str, Any]:
    """Part 2: compact read+compare tokens/s, original numpy path vs the fused kernel, and the
    forward pass (``forward()``: tokens/s of one run), interleaved run by run."""
    n_win, _, vocab = ref.shape
    st = _write_compact(root / f"cmp-{vocab}", ref, toks)
    n_tok = n_win * st.n_scored

    def before() -> None:
        for w in range(n_win):
            oracle_metrics_chunked(st.rows(w), q[w, :-1], st.targets(w))

    def after() -> None:
        for w in range(n_win):
            st.metrics_against(w, q[w, :-1])

    after()  # compiled (numba cache) before timing
    runs: dict[str, list[float]] = {"before": [], "after": [], "forward": []}
    for _ in range(repeat):  # interleaved, so that load from other processes hits all alike
        runs["forward"].append(forward())
        runs["before"].append(n_tok / _median_time(before, 1))
        runs["after"].append(n_tok / _median_time(after, 1))
    med = {k: statistics.median(v) for k, v in runs.items()}
    kb = np.concatenate([oracle_metrics_chunked(st.rows(w), q[w, :-1], st.targets(w))["kld"]
                         for w in range(n_win)])
    ka = np.concatenate([st.metrics_against(w, q[w, :-1]).kld for w in range(n_win)])
    return {"vocab": vocab, "n_tokens": n_tok, "mean_k": float(np.mean(st.counts)),
            "before_tok_s": med["before"], "after_tok_s": med["after"],
            "speedup_x": med["after"] / med["before"], "forward_tok_s": med["forward"],
            "after_over_forward_x": med["after"] / med["forward"],
            "before_over_forward_x": med["before"] / med["forward"],
            "kld_mean_before": float(kb.mean()), "kld_mean_after": float(ka.mean())}


def forward_speed(lm: Any, toks: np.ndarray) -> Any:
    """A callable: tokens/s of one forward pass over ``toks`` (batch 1, every position's
    logits), the way a backend runs the model."""
    import torch

    def run() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for w in toks:
                lm.module(torch.from_numpy(w[None])).logits.float()
        return toks.size / (time.perf_counter() - t0)

    run()  # warm-up
    return run


def numerics(root: Path, ref: np.ndarray, q: np.ndarray, toks: np.ndarray) -> dict[str, Any]:
    """Mean KLD from the logits (float64 log-softmax here) vs from torch's float32 log-softmax
    re-normalised in float64 (the path before), compact and full stores."""
    import torch

    def f32(x: np.ndarray) -> np.ndarray:
        return torch.log_softmax(torch.from_numpy(x), dim=-1).numpy()

    out: dict[str, Any] = {}
    n_win = len(ref)
    for kind in ("compact", "full"):
        means = []
        for tag, r, qq in (("logits", ref, q), ("f32_logsoftmax", f32(ref), f32(q))):
            st: CompactStore | FullStore = (
                _write_compact(root / f"num-{tag}", r, toks) if kind == "compact"
                else _write_full(root / f"numf-{tag}", r, toks, "float32"))
            k = np.concatenate([st.metrics_against(w, qq[w, :-1]).kld for w in range(n_win)])
            means.append(float(k.mean()))
        out[f"{kind}_kld_mean_from_logits"] = means[0]
        out[f"{kind}_kld_mean_from_f32_logsoftmax"] = means[1]
        out[f"{kind}_kld_mean_rel_change"] = means[0] / means[1] - 1
    out.update(device_numerics(root, ref, q, toks))
    return out


def device_numerics(root: Path, ref: np.ndarray, q: np.ndarray, toks: np.ndarray
                    ) -> dict[str, Any]:
    """The torch (CUDA) path on CPU tensors against the float64 kernels: mean KLD and the
    largest per-token KLD difference (float32 passes over V)."""
    import torch

    from quantfid.metrics import device

    comp = CompactStore(root / "num-logits")
    full = FullStore(root / "numf-logits")
    out: dict[str, Any] = {}
    for kind, st in (("compact", comp), ("full", full)):
        a, b = [], []
        for w in range(len(ref)):
            qt = torch.from_numpy(q[w, :-1])
            a.append(st.metrics_against(w, qt).kld)
            dev = (device.compact_metrics_torch(comp.rows(w), qt, comp.targets(w)) if
                   kind == "compact" else
                   device.full_metrics_torch(full.rows(w), qt, full.targets(w)))
            b.append(dev.arrays["kld"])
        ka, kb = np.concatenate(a), np.concatenate(b)
        out[f"{kind}_device_path_kld_mean_rel_diff"] = float(kb.mean() / ka.mean() - 1)
        out[f"{kind}_device_path_kld_max_abs_diff"] = float(np.abs(kb - ka).max())
    return out


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
    ap.add_argument("--compare-vocab", type=int, nargs="*", default=[49152, 151936])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    lm = _model()
    toks = _windows(lm, args.windows, args.ctx)
    if args.ref:
        ref = np.load(args.ref)
        q = np.load(args.quant) if args.quant else ref
        toks = np.load(args.tokens) if args.tokens else np.zeros(ref.shape[:2], np.int64)
    elif args.real:
        ref, q = _real(lm, toks)
    else:
        ref, q, toks = _synthetic(args.windows, args.ctx, args.vocab)
    res: dict[str, Any] = {"logits": "file" if args.ref else "real" if args.real else "synthetic"}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        res["stores"] = stores(root, ref, q, toks, args.repeat)
        forward = forward_speed(lm, _windows(lm, 1, args.ctx))
        res["compare"] = []
        for v in args.compare_vocab:
            data = (ref, q, toks) if v == ref.shape[-1] else _synthetic(args.windows, args.ctx, v)
            c = compare_speed(root, *data, args.repeat, forward)
            c["logits"] = res["logits"] if v == ref.shape[-1] else "synthetic"
            res["compare"].append(c)
        if args.real:
            res["numerics"] = numerics(root, ref, q, toks)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
