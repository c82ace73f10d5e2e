"""Signals inside ``interrupts.handled``: raised as exceptions, and recorded so that a library
that swallows the exception cannot lose the interrupt."""

from __future__ import annotations

import os
import signal

import pytest

from quantfid import interrupts


def _swallowing_library(sig: int) -> None:
    """Stands for C code calling back into Python and clearing the pending exception."""
    try:
        os.kill(os.getpid(), sig)
        for _ in range(10_000):  # the handler runs between bytecodes, here
            pass
    except KeyboardInterrupt:
        pass


@pytest.mark.parametrize(("sig", "exc"), [(signal.SIGINT, KeyboardInterrupt),
                                          (signal.SIGTERM, interrupts.Terminated)])
def test_a_swallowed_signal_is_raised_again_by_the_check(sig: int, exc: type) -> None:
    before = signal.getsignal(sig)
    with interrupts.handled():
        interrupts.raise_if_signalled()  # nothing recorded yet
        _swallowing_library(sig)
        with pytest.raises(exc) as caught:
            interrupts.raise_if_signalled()
        assert type(caught.value) is exc
    assert signal.getsignal(sig) is before
    interrupts.raise_if_signalled()  # the record ends with the block


def test_a_signal_raises_where_the_main_thread_is() -> None:
    with interrupts.handled(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10_000):
            pass
