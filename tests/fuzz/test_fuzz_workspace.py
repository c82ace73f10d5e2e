"""Fuzz quantfid's own formats: the workspace manifest and its Parquet parts (outcomes,
prompts, fidelity), and the per-quant aggregate tables of ``analyze --table`` (CSV, TSV,
Markdown). A mutated file reads as valid records or raises QuantfidError."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from tests.fuzz.mutate import dumps, expect, mutated_bytes, mutated_json

from quantfid.errors import QuantfidError
from quantfid.ingest import ingest
from quantfid.ingest.prompts import read_prompts
from quantfid.ingest.run import _row
from quantfid.store.boundary import ROLES, check_outcome
from quantfid.store.workspace import FORMAT_VERSION, MANIFEST, Workspace

FIX = Path(__file__).parents[1] / "ingest" / "fixtures"
DATE = "2025-06-01T10-00-00.123456"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a reference, a quant, an intersection, prompts and fidelity."""
    d = tmp_path_factory.mktemp("fuzz-ws") / "base"
    ws = Workspace(d)
    ingest(ws, "lm-eval", [FIX / f"lm_eval/v0.4.9/ref/made-up__ref/samples_arc_mini_{DATE}.jsonl"],
           "ref", reference=True)
    q4 = FIX / f"lm_eval/v0.4.9/q4/made-up__q4/samples_arc_mini_{DATE}.jsonl"
    short = d.parent / q4.name
    short.write_text("".join(x + "\n" for x in q4.read_text().splitlines()[:-1]))
    ingest(ws, "lm-eval", [short], "q4", intersect=True)
    ingest(ws, "llamacpp", [FIX / "llamacpp/kld_q4.log"], "q4", corpus="wiki")
    return d


def _fresh(base: Path, name: str) -> Path:
    d = base.parent / name
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(base, d)
    return d


def _read_all(d: Path) -> Workspace:
    ws = Workspace(d, create=False)
    for m in ws.models():
        assert isinstance(m.id, str) and m.id and m.role in ROLES
    ref = ws.reference
    assert ref is None or ref.role == "reference"
    for ids in ws.intersections().values():
        assert all(isinstance(i, str) for i in ids)
    for o in ws.outcomes():
        check_outcome(_row(o), "read")
    for p in read_prompts(ws):
        assert isinstance(p.prompt, str) and all(isinstance(c, str) for c in p.continuations)
    for r in ws.rows("fidelity"):
        assert isinstance(r, dict)
    return ws


# ---- manifest ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def manifest_bytes(base: Path) -> bytes:
    return (base / MANIFEST).read_bytes()


def test_manifest(base: Path, manifest_bytes: bytes) -> None:
    valid = json.loads(manifest_bytes)
    d = _fresh(base, "manifest")

    @given(mutated_json(valid).map(dumps) | mutated_bytes(manifest_bytes, text=True))
    def run(data: bytes) -> None:
        (d / MANIFEST).write_bytes(data)
        expect(lambda: _read_all(d), QuantfidError)

    run()


# ---- parts -------------------------------------------------------------------------------------
def _part_bytes(rows: list[dict[str, Any]], part: str) -> bytes | None:
    try:
        t = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError):
        return None
    t = t.replace_schema_metadata({b"format_version": str(FORMAT_VERSION).encode(),
                                   b"unit_hash": b"x", b"part": part.encode()})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


@pytest.mark.parametrize("table", ["outcomes", "prompts", "fidelity"])
def test_parts(table: str, base: Path) -> None:
    d = _fresh(base, f"parts-{table}")
    target = sorted((d / "tables" / table).glob("*.parquet"))[-1]
    raw = target.read_bytes()
    rows = pq.read_table(target).to_pylist()
    for r in rows:  # JSON-able for mutation (lists stay lists)
        for k, v in r.items():
            if isinstance(v, float) and math.isnan(v):
                r[k] = None

    @given(mutated_json(rows).map(lambda rs: _part_bytes(rs, target.stem)
                                  if isinstance(rs, list) and all(isinstance(r, dict) for r in rs)
                                  else None)
           | mutated_bytes(raw))
    def run(data: bytes | None) -> None:
        assume(data is not None)
        assert data is not None
        target.write_bytes(data)
        expect(lambda: _read_all(d), QuantfidError)

    run()


# ---- analyze --table inputs ----------------------------------------------------------------------
TABLE = (b"| model | kld | acc | note |\n|---|---:|---:|---|\n| ref | - | 71.2% | base |\n"
         b"| q8 | 0.001 | 71.0% | a |\n| q4 | 0.05 \xc2\xb1 0.01 | 69.5 | b |\n"
         b"| q2 | 0.4 | 60.1 | c |\n")


@given(st.sampled_from([("t.md", TABLE),
                        ("t.csv", b"model,kld,acc\nref,,71.2\nq8,0.001,71.0\nq4,0.05,69.5\n"),
                        ("t.tsv", b"model\tkld\tacc\nref\t-\t71.2\nq8\t0.001\t71.0\n")])
       .flatmap(lambda c: st.tuples(st.just(c[0]), mutated_bytes(c[1], text=True))))
def test_analyze_table_reader(tmp_path_factory: pytest.TempPathFactory,
                              case: tuple[str, bytes]) -> None:
    from quantfid.analysis.table import parse_cell, read_rows

    name, data = case
    p = tmp_path_factory.getbasetemp() / name
    p.write_bytes(data)
    got = expect(lambda: read_rows(p), QuantfidError)
    if got is None:
        return
    header, body = got
    assert all(len(r) == len(header) for r in body)
    for r in body:
        for c in r[1:]:
            v = expect(lambda c=c: parse_cell(c, "cell"), QuantfidError)
            assert v is None or isinstance(v, float)
