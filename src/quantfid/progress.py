"""Progress bars: always on stderr, so stdout stays clean for data and --json."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(total: int | None = None, desc: str = "", unit: str = "it", disable: bool | None = None) -> tqdm:
    """A tqdm bar on stderr; hidden when stderr is not a terminal unless forced on."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                dynamic_ncols=True, leave=False)


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it") -> Iterator[T]:
    """Iterate ``items`` with a progress bar on stderr."""
    yield from tqdm(items, total=total, desc=desc, unit=unit, file=sys.stderr,
                    dynamic_ncols=True, leave=False)
