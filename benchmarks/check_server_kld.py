"""End-to-end check of issue 11's "Done when", without the measure pipeline: a llama-perplexity
style kld-base reference, quants served by llama-cpp-python's server, mean KLD through the
server at top-K against the in-process llama.cpp backend's on the same file.

1. Reference: the embedded GGUF dequantized to F32 (``llama_model_quantize``, ALL_F32), run
   in-process by llama.cpp (quantfid's llamacpp backend: flash attention, one batch per
   window); its logits of positions ctx/2 .. ctx-2 of each chunk are written as a kld-base
   file (``quantfid.store.llamacpp.KldBaseWriter``, llama-perplexity's format).
2. Quants: Q8_0 and Q4_0 quantized from the F32 file with ``llama_model_quantize``.
3. In-process: the quant's logits against the kld-base file, llama.cpp's way
   (``KldBase.metrics_against``): the reference number.
4. Server: ``python -m llama_cpp.server`` on the quant; the http backend scores the same
   chunks at top-K; the reference side is the kld-base rows as compact rows (the compact
   store's writer; entries at the file's 16-nat floor are dropped, as llama.cpp's KLD skips
   them); ``quantfid.metrics.topk.topk_fidelity`` gives the estimate and ``kld_bound_low``.

    python benchmarks/check_server_kld.py --top-k 20          # prints one JSON object

Passes when, for every quant, |estimate / in-process - 1| <= 10 % and low <= in-process.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def quantize(src: Path, dst: Path, ftype: int, requantize: bool = False) -> Path:
    import llama_cpp

    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.allow_requantize, p.nthread = ftype, requantize, 1
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(p)):
        raise SystemExit(f"llama_model_quantize failed for {dst}")
    return dst


def reference_rows(base: Any, chunk: int, tmp: Path) -> Any:
    """Compact rows of one kld-base chunk (float64 renormalisation of the kept 16 nats)."""
    from quantfid.store.compact import CompactStoreWriter
    from quantfid.store.rows import CompactRows

    lp = base.logp(chunk).astype(np.float64)
    floor = np.asarray(base.rows[chunk][:, 4:4 + base.n_vocab]) == 0  # the 16-nat floor
    lp[floor] = -1e4  # probability 0 after the float64 renormalisation (the writer takes
    # finite values only)
    w = CompactStoreWriter(tmp / f"ref{chunk}", model_id="ref", tokenizer_id="t",
                           vocab_size=base.n_vocab, ctx=base.n_ctx, scoring="llamacpp",
                           rng=np.random.default_rng(chunk))
    w.append(lp, np.asarray(base.tokens[chunk], np.int64))
    s = w.close()
    return CompactRows(np.asarray(s.counts), np.asarray(s.ids, np.int64), np.asarray(s.values),
                       np.asarray(s.log_tail), np.asarray(s.target_logp),
                       np.asarray(s.tail_counts), np.asarray(s.tail_ids, np.int64),
                       np.asarray(s.tail_values))


class Fidelity:
    def __init__(self, ref: dict[int, Any], tokens: np.ndarray, first: int) -> None:
        self.ref, self.tokens, self.first = ref, tokens, first

    def full(self, window: int, pos0: int, logits: Any) -> Any:
        raise AssertionError("a server hands top-k rows")

    def topk(self, window: int, pos0: int, rows: Any) -> Any:
        from quantfid.metrics.topk import topk_fidelity

        r = self.ref[window].slice(pos0 - self.first, pos0 - self.first + len(rows))
        return topk_fidelity(r, rows, self.tokens[window, pos0 + 1:pos0 + 1 + len(rows)])

    def wanted_ids(self, window: int, pos0: int, n: int) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--quants", default="Q8_0,Q4_0")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import llama_cpp
    from tests.servers import conftest

    from quantfid import embedded
    from quantfid.backends.http import open_http
    from quantfid.backends.http.vocab import LocalVocab
    from quantfid.backends.llamacpp import LlamaCppBackend
    from quantfid.corpus import load_corpus
    from quantfid.models import parse_spec
    from quantfid.reducers import full_logprobs
    from quantfid.store.llamacpp import KldBase, KldBaseWriter

    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="qf-server-kld-"))
    f32 = quantize(embedded.gguf_path(), tmp / "f32.gguf", llama_cpp.LLAMA_FTYPE_ALL_F32, True)
    ids = LocalVocab(str(f32)).tokenize(load_corpus("prose").text)[:args.ctx * args.chunks]
    tokens = np.asarray(ids, np.int64).reshape(args.chunks, args.ctx)  # no BOS: the model adds none
    first, stop = args.ctx // 2, args.ctx - 1
    ref_be = LlamaCppBackend(f32, n_ctx=args.ctx, threads=args.threads,
                             n_threads_batch=args.threads)
    with KldBaseWriter(tmp / "base.kld", tokens, ref_be.vocab_size()) as w:
        for lp in full_logprobs(ref_be, tokens, start=first, stop=stop):
            w.append(lp[0])
    base = KldBase(tmp / "base.kld")
    ref = {c: reference_rows(base, c, tmp) for c in range(args.chunks)}
    out: dict[str, Any] = {"ctx": args.ctx, "chunks": args.chunks, "top_k": args.top_k,
                           "scored_tokens": base.n_tokens, "quants": {}}
    conftest.THREADS = args.threads
    for name in args.quants.split(","):
        ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
        q = quantize(f32, tmp / f"{name}.gguf", ftype)
        qbe = LlamaCppBackend(q, n_ctx=args.ctx, threads=args.threads,
                              n_threads_batch=args.threads)
        inproc = np.concatenate([base.metrics_against(c, lp[0].numpy()).kld for c, lp in
                                 enumerate(full_logprobs(qbe, tokens, start=first, stop=stop))])
        proc, url = conftest.start_server(q, tmp / f"{name}.log", n_ctx=2 * args.ctx)
        try:
            be = open_http(parse_spec(url, tokenizer=str(q), top_k=args.top_k, concurrency=1))
            res = [r for _, r in be.score_windows(tokens, first, stop,
                                                  Fidelity(ref, tokens, first))]
        finally:
            conftest.stop_server(proc)
        est = float(np.concatenate([r.metrics.kld for r in res]).mean())
        low = float(np.concatenate([r.kld_bound_low for r in res]).mean())
        m = float(inproc.mean())
        out["quants"][name] = {"in_process_mean_kld": m, "server_estimate": est,
                               "server_kld_bound_low": low, "relative_error": est / m - 1,
                               "collisions": getattr(be.dialect, "collisions", 0),
                               "ok": abs(est / m - 1) <= 0.10 and low <= m}
    out["ok"] = all(v["ok"] for v in out["quants"].values())
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
