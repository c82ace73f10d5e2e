"""Tokens per second through llama-cpp-python's server against the in-process llama.cpp
backend, on the same GGUF in the same run (ratios of medians; timings on a shared machine
are noisy, so no absolute claim is made).

Both sides score positions ctx/2 .. ctx-2 of each window, as llama-perplexity does: the
in-process backend (``quantfid.backends.llamacpp``) evaluates the window and hands back the
float32 log-probs; the server evaluates it, builds its echo log-probs (it sorts the whole
vocabulary in Python per position) and the http backend realigns the top K.

    python benchmarks/bench_server.py                    # embedded GGUF, 4 x 128 tokens, K 20
    python benchmarks/bench_server.py --model Q.gguf --ctx 256 --windows 8 --top-k 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Rows:
    """A reducer that keeps nothing: the cost measured is the server's and the parsing."""

    def full(self, window: int, pos0: int, logits: Any) -> None:
        return None

    def topk(self, window: int, pos0: int, rows: Any) -> int:
        return len(rows)

    def wanted_ids(self, window: int, pos0: int, n: int) -> None:
        return None


def _windows(model: Path, ctx: int, n: int) -> np.ndarray:
    from quantfid.backends.http.vocab import LocalVocab
    from quantfid.corpus import load_corpus

    ids = LocalVocab(str(model)).tokenize(load_corpus("prose").text)
    if len(ids) < ctx * n:
        raise SystemExit(f"the prose corpus has {len(ids)} tokens, fewer than {ctx * n}")
    return np.asarray(ids[:ctx * n], np.int64).reshape(n, ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="GGUF file (default: the embedded model)")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--windows", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tests.servers import conftest

    from quantfid import embedded
    from quantfid.backends.http import open_http
    from quantfid.backends.llamacpp import LlamaCppBackend
    from quantfid.models import parse_spec
    from quantfid.reducers import full_logprobs

    model = Path(args.model) if args.model else embedded.gguf_path()
    ids = _windows(model, args.ctx, args.windows)
    first, stop = args.ctx // 2, args.ctx - 1
    n_tok = args.windows * (stop - first)
    inproc = LlamaCppBackend(model, n_ctx=args.ctx, threads=args.threads,
                             n_threads_batch=args.threads)
    conftest.THREADS = args.threads
    log = Path(tempfile.mkdtemp()) / "server.log"
    proc, url = conftest.start_server(model, log, n_ctx=2 * args.ctx)
    times: dict[str, list[float]] = {"in-process": [], "server": []}
    try:
        served = open_http(parse_spec(url, tokenizer=str(model), top_k=args.top_k,
                                      concurrency=1))
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _lp in full_logprobs(inproc, ids, start=first, stop=stop):
                pass
            times["in-process"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _w in served.score_windows(ids, first, stop, _Rows()):
                pass
            times["server"].append(time.perf_counter() - t0)
    finally:
        conftest.stop_server(proc)
    tps = {k: n_tok / statistics.median(v) for k, v in times.items()}
    print(json.dumps({"model": str(model), "ctx": args.ctx, "windows": args.windows,
                      "scored_tokens": n_tok, "top_k": args.top_k, "threads": args.threads,
                      "tokens_per_s_median": {k: round(v, 1) for k, v in tps.items()},
                      "server_over_in_process": round(tps["server"] / tps["in-process"], 4)},
                     indent=1))


if __name__ == "__main__":
    main()
