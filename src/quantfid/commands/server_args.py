"""Command-line options for models behind inference servers (``--quant http://...``), shared
by ``measure`` and ``bench``; each becomes a ``ModelSpec`` option (docs/servers.md)."""

from __future__ import annotations

import argparse
from typing import Any

from quantfid.commands.argtypes import positive_int

# flag -> (spec option, type, help)
FLAGS: dict[str, tuple[str, Any, str]] = {
    "--server-dialect": ("dialect", str, "vllm | sglang | llamacpp (default: detected)"),
    "--top-k": ("top_k", positive_int,
                "log-probs per position a server returns (vLLM caps it with --max-logprobs; "
                "K = 20 keeps mean KLD within 10 %%, see docs/servers.md)"),
    "--concurrency": ("concurrency", positive_int, "requests in flight (default 4)"),
    "--api-key-env": ("api_key_env", str,
                      "environment variable holding the server's API key (bearer token)"),
    "--tokenizer": ("tokenizer", str,
                    "a local tokenizer (model spec) to check a server's vocabulary against "
                    "(default: the reference's)"),
    "--server-timeout": ("timeout_s", float, "seconds per request (default 300)"),
    "--retries": ("retries", int, "retries on 5xx and connection errors (default 3)"),
}


def add(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("servers (model specs that are http(s) URLs)")
    for flag, (_, typ, text) in FLAGS.items():
        g.add_argument(flag, type=typ, default=None, help=text)


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The server options given on the command line (only those set)."""
    out = {}
    for flag, (key, _, _) in FLAGS.items():
        v = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if v is not None:
            out[key] = v
    return out
