"""Ctrl-C and SIGTERM that no library can lose.

Within :func:`handled`, SIGINT raises ``KeyboardInterrupt`` and SIGTERM raises
:class:`Terminated` (a ``KeyboardInterrupt``, so ``finally`` blocks and atomic writers clean up
the same way), as Python's default handler does for SIGINT. A signal can land while the main
thread runs Python code called back from C, whose exception the C side may clear: Ray's
waits check signals from C++, and a CI run saw a Ctrl-C sent to a Ray driver lost that way
(the study ran to the end). So the handlers also record the signal, and loops that wait on
such libraries call :func:`raise_if_signalled`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that ``finally`` blocks and atomic writers
    clean up exactly as on Ctrl-C."""


_received: list[int] = []  # signals seen inside `handled`, in order


def _exception(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _record_and_raise(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise _exception(signum)


def raise_if_signalled() -> None:
    """Raise the exception of the first signal :func:`handled` recorded, if any (once raised
    it stays recorded until the block ends, so every later check raises too)."""
    if _received:
        raise _exception(_received[0])


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise and are recorded (main thread only; in other
    threads the block changes nothing). Restores the previous handlers on exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    old = {s: signal.signal(s, _record_and_raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _received.clear()
