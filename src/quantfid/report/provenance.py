"""Provenance of a report: tool version, inputs and their hashes, seeds, machine, timings."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from typing import Any

from quantfid._version import __version__
from quantfid.store.workspace import Workspace


def machine() -> dict[str, Any]:
    """Where it ran: OS, CPU, cores, Python, the numeric libraries' versions, and which library
    computes float32 products on the CPU (:mod:`quantfid.backends.cpu_gemm`)."""
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "processor": platform.processor() or None, "cpu_count": os.cpu_count(),
                            "python": sys.version.split()[0]}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("numpy", "scipy", "torch", "transformers", "pyarrow", "matplotlib"):
        m = sys.modules.get(mod)
        if m is not None:
            info[f"{mod}_version"] = getattr(m, "__version__", None)
    if "torch" in sys.modules:
        from quantfid.backends.cpu_gemm import product

        info["cpu_float32_gemm"] = product()
    return info


def from_workspace(ws: Workspace, *, seeds: dict[str, Any] | None = None,
                   timings: dict[str, float] | None = None, config: dict[str, Any] | None = None,
                   ) -> dict[str, Any]:
    """Provenance of a workspace's report: its models (with hashes), corpora, benchmarks."""
    m = ws.manifest
    models = [{"id": k, "role": v.get("role"), "source": v.get("source"), "scheme": v.get("scheme"),
               "bits_per_weight": v.get("bits_per_weight"), "hash": v.get("hash")}
              for k, v in m.get("models", {}).items()]
    return {
        "tool": "quantfid", "tool_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspace": str(ws.path.resolve()),
        "workspace_tool_version": m.get("tool_version"),
        "reference": m.get("reference"),
        "inputs": {"models": models, "corpora": m.get("corpora", {}),
                   "benchmarks": m.get("benchmarks", {})},
        "seeds": seeds or {},
        "machine": machine(),
        "timings_s": timings or {},
        "config": config,
    }
