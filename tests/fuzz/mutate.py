"""Strategies that mutate a valid file: byte-level (truncations, flipped, deleted and
inserted bytes, extreme values written over binary header fields, numbers in text replaced
by NaN / inf / huge / negative ones) and structural for JSON (a deleted field, a value of
the wrong type or an extreme number)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import event
from hypothesis import strategies as st

WEIRD_NUMBERS = ("NaN", "nan", "inf", "-inf", "Infinity", "-Infinity", "1e309", "-7", "5.0",
                 "0", "-0", "1e-320", "99999999999999999999999", "2147483648", "-1")
WEIRD_VALUES: tuple[Any, ...] = (None, True, False, "", "x", "NaN", [], {}, [[]], {"a": 1},
                                 math.nan, math.inf, -math.inf, 1e308, -7, 5.0, 0, 10**30,
                                 -1, 0.5, "1", [1, 2], "pass")
_NUM_RE = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _truncate(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, max(0, len(data) - 1)).map(lambda k: data[:k])


def _flip(data: bytes) -> st.SearchStrategy[bytes]:
    def apply(edits: list[tuple[int, int]]) -> bytes:
        b = bytearray(data)
        for i, v in edits:
            b[i % len(b)] = v
        return bytes(b)
    return st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)),
                    min_size=1, max_size=6).map(apply)


def _delete(data: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(data)), st.integers(1, 64)).map(
        lambda t: data[:t[0]] + data[t[0] + t[1]:])


def _insert(data: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(data)), st.binary(min_size=1, max_size=24)).map(
        lambda t: data[:t[0]] + t[1] + data[t[0]:])


def _numbers(data: bytes) -> st.SearchStrategy[bytes]:
    spans = [m.span() for m in _NUM_RE.finditer(data)]
    if not spans:
        return st.just(data)

    def apply(picks: list[tuple[int, str]]) -> bytes:
        out = data
        for k, w in sorted(picks, key=lambda p: -spans[p[0] % len(spans)][0]):
            a, b = spans[k % len(spans)]
            out = out[:a] + w.encode() + out[b:]
        return out
    return st.lists(st.tuples(st.integers(0, 1 << 20), st.sampled_from(WEIRD_NUMBERS)),
                    min_size=1, max_size=3, unique_by=lambda p: p[0] % len(spans)).map(apply)


def _fields(data: bytes, fields: Sequence[tuple[int, int]]) -> st.SearchStrategy[bytes]:
    """Overwrite little-endian integer fields (offset, width) with extreme values."""
    def apply(picks: list[tuple[int, int]]) -> bytes:
        b = bytearray(data)
        for k, v in picks:
            off, width = fields[k % len(fields)]
            if off + width <= len(b):
                b[off:off + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
        return bytes(b)
    extremes = st.sampled_from([0, 1, 2, 3, 255, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**40,
                                2**63 - 1, 2**63, 2**64 - 1, -1])
    return st.lists(st.tuples(st.integers(0, 1 << 20), extremes | st.integers(0, 2**64 - 1)),
                    min_size=1, max_size=3).map(apply)


def mutated_bytes(data: bytes, fields: Sequence[tuple[int, int]] = (),
                  text: bool = False) -> st.SearchStrategy[bytes]:
    """One mutation of ``data``: truncation, flips, deletion, insertion, and (``fields``)
    extreme header values or (``text``) weird numbers."""
    opts = [_truncate(data), _flip(data), _delete(data), _insert(data)]
    if fields:
        opts += [_fields(data, fields)] * 2
    if text:
        opts += [_numbers(data)] * 2
    return st.one_of(*opts)


def _paths(obj: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*here, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*here, i))
    return out


def _edit(obj: Any, path: tuple[Any, ...], op: str, value: Any) -> Any:
    root = json.loads(json.dumps(obj))
    if not path:
        return value if op == "set" else {}
    parent = root
    for k in path[:-1]:
        parent = parent[k]
    if op == "del":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


def mutated_json(obj: Any) -> st.SearchStrategy[Any]:
    """``obj`` with one to three nodes deleted or replaced by a wrong-typed / extreme value."""
    paths = _paths(obj)

    def apply(edits: list[tuple[int, str, Any]]) -> Any:
        out = obj
        for k, op, v in edits:
            live = _paths(out)
            out = _edit(out, live[k % len(live)], op, v)
        return out
    edit = st.tuples(st.integers(0, max(1, len(paths)) * 4), st.sampled_from(["del", "set"]),
                     st.sampled_from(WEIRD_VALUES))
    return st.lists(edit, min_size=1, max_size=3).map(apply)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def jsonl_mutations(lines: list[Any]) -> st.SearchStrategy[bytes]:
    """JSON Lines with one line structurally mutated, or the whole file byte-mutated."""
    whole = b"".join(dumps(x) + b"\n" for x in lines)

    def one(pick: tuple[int, Any]) -> bytes:
        k, new = pick
        out = list(lines)
        out[k] = new
        return b"".join(dumps(x) + b"\n" for x in out)
    per_line = st.integers(0, len(lines) - 1).flatmap(
        lambda k: mutated_json(lines[k]).map(lambda new: (k, new))).map(one)
    return st.one_of(per_line, per_line, mutated_bytes(whole, text=True))


def expect(fn: Callable[[], Any], allowed: type[BaseException]) -> Any:
    """``fn()``'s result, or None if it raised ``allowed`` (any other exception fails).
    The split shows under ``pytest --hypothesis-show-statistics``."""
    try:
        out = fn()
    except allowed:
        event("refused")
        return None
    event("accepted")
    return out
