import json

import pytest

from quantfid.errors import FormatError, MismatchError, QuantfidError
from quantfid.records import Model, Outcome
from quantfid.store.workspace import Workspace


def test_models_and_single_reference(tmp_path):
    ws = Workspace(tmp_path / "w")
    ws.add_model(Model(id="ref", role="reference"))
    ws.add_model(Model(id="q4", bits_per_weight=4.5))
    assert ws.reference is not None and ws.reference.id == "ref"
    assert [m.id for m in ws.models("quant")] == ["q4"]
    with pytest.raises(MismatchError, match="already has reference 'ref'"):
        ws.add_model(Model(id="other", role="reference"))
    with pytest.raises(QuantfidError, match="no model 'nope'"):
        ws.model("nope")


def test_parts_roundtrip_and_unit_hash(tmp_path):
    ws = Workspace(tmp_path)
    ws.add_outcomes("a", [Outcome("m", "b", "1", True), Outcome("m", "b", "2", False)], unit_hash="h1")
    assert ws.has_part("outcomes", "a", "h1")
    assert not ws.has_part("outcomes", "a", "h2")
    ws.add_outcomes("b", [Outcome("n", "b", "1", True, score=1.0)])
    got = sorted((o.model, o.prompt_id, o.passed) for o in ws.outcomes())
    assert got == [("m", "1", True), ("m", "2", False), ("n", "1", True)]
    assert not list(tmp_path.glob("tables/outcomes/.*tmp"))


def test_refuses_other_format_version(tmp_path):
    Workspace(tmp_path)
    m = json.loads((tmp_path / "quantfid.json").read_text())
    m["format_version"] = 99
    (tmp_path / "quantfid.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="format_version 99"):
        Workspace(tmp_path)


def test_open_missing_without_create(tmp_path):
    with pytest.raises(QuantfidError, match="not a quantfid workspace"):
        Workspace(tmp_path / "missing", create=False)


def test_atomic_files_get_normal_permissions(tmp_path):
    import os

    from quantfid import atomic

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "r.html").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "r.html").read_text() == "x"
