"""Joining a Ray cluster, or starting one on this machine, and sizing the workers to it.

``address`` empty: a one-machine cluster is started for the run and stopped after it, bound
to the loopback address only. ``host:port``: the running cluster there (``ray start --head``).
Ray already initialised in this process (a notebook, a test): used as it is, and left running.

Loopback: Ray replaces ``127.0.0.1`` and ``localhost`` with the machine's outward address
(in ``ray.init`` and ``ray start`` alike, ray-project/ray#59110), and then listens on every
interface. For a cluster started here, and for an address on the loopback, the driver sets
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which makes Ray take the loopback address as this
node's (every Ray process then listens on 127.0.0.1 only). Usage statistics are off
(``RAY_USAGE_STATS_ENABLED=0``) and no dashboard is started. A cluster started here uses Ray's
token authentication (``RAY_AUTH_MODE=token``: Ray creates ``~/.ray/auth_token`` if missing);
to join a cluster that uses tokens, export ``RAY_AUTH_MODE=token`` with the cluster's token.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from quantfid.errors import QuantfidError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Resources:
    """What one unit (one worker) reserves on a node."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory:
            out["memory"] = self.memory
        return out

    def fits(self, node: dict[str, float]) -> int:
        """How many workers fit on a node with ``node`` resources (-1: unbounded)."""
        counts = [math.floor(node.get(name, 0.0) / need + 1e-9)
                  for name, need in (("CPU", self.num_cpus), ("GPU", self.num_gpus),
                                     ("memory", float(self.memory))) if need > 0]
        return min(counts) if counts else -1

    def describe(self) -> str:
        mem = f", memory {self.memory / 2**30:.1f} GiB" if self.memory else ""
        return f"num_cpus {self.num_cpus:g}, num_gpus {self.num_gpus:g}{mem}"


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return host in ("localhost", "::1") or host.startswith("127.")


def pin_loopback() -> None:
    """Make Ray take 127.0.0.1 as this node's address (see the module docstring)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray._private.ray_constants" in sys.modules:  # read once at import: set it too
        constants: Any = sys.modules["ray._private.ray_constants"]
        constants.ENABLE_RAY_CLUSTER = False


@contextlib.contextmanager
def connect(address: str = "") -> Iterator[str]:
    """Ray connected for the block; yields a description of the cluster."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # every result the executor cares about is fetched; the rest (units of workers killed
    # on Ctrl-C) would only print tracebacks at exit
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if not getattr(sys.stderr, "isatty", lambda: False)():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    local = not address
    if local or is_loopback(address):
        pin_loopback()
    if local and "ray" not in sys.modules:  # Ray reads it once, at import
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    if ray.is_initialized():
        yield describe()
        return
    kw: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                          "log_to_driver": True}
    if local or is_loopback(address):
        kw["_node_ip_address"] = LOOPBACK
    try:
        ray.init(address="local" if local else address, **kw)
    except ray.exceptions.AuthenticationError as e:
        raise QuantfidError(f"the Ray cluster at {address} refused this driver: set "
                            "RAY_AUTH_MODE=token and give it the cluster's token (~/.ray/auth_token "
                            f"or RAY_AUTH_TOKEN); see docs/cluster.md ({_first_line(e)})") from e
    except (ConnectionError, TimeoutError, ValueError) as e:
        raise QuantfidError(f"cannot join the Ray cluster at {address!r}: {_first_line(e)} "
                            "(start one with 'ray start --head'; see docs/cluster.md)") from e
    try:
        yield describe()
    finally:
        ray.shutdown()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def describe() -> str:
    ns = nodes()
    cpus = sum(n.get("CPU", 0.0) for n in ns)
    gpus = sum(n.get("GPU", 0.0) for n in ns)
    return f"{len(ns)} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s)"


def capacity(res: Resources, limit: int) -> int:
    """How many workers to start: as many as the alive nodes hold, at most ``limit``."""
    counts = [res.fits(n) for n in nodes()]
    if any(c < 0 for c in counts):
        return limit
    n = min(limit, sum(counts))
    if n <= 0:
        raise QuantfidError(f"no node of the Ray cluster ({describe()}) fits one unit "
                            f"({res.describe()}); lower [executor] num_cpus/num_gpus/memory or "
                            "add nodes")
    return n
