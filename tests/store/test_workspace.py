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


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_commit_refuses_a_second_reference_before_writing(tmp_path):
    from quantfid.store.workspace import Part

    ws = Workspace(tmp_path / "w")
    ws.add_model(Model(id="ref", role="reference"))
    before = _files(ws.path)
    rows = [Outcome("other", "b", "1", True).to_dict()]
    with pytest.raises(MismatchError, match="already has reference 'ref'"):
        ws.commit([Part("outcomes", "p", rows, "h")], [Model(id="other", role="reference")])
    assert _files(ws.path) == before and not (ws.path / "tables").exists()


def test_commit_is_all_or_nothing_when_a_write_fails(tmp_path, monkeypatch):
    import errno

    from quantfid import atomic
    from quantfid.store.workspace import Part

    ws = Workspace(tmp_path / "w")
    ws.write_part("outcomes", "old", [Outcome("q", "b", "1", True).to_dict()], "h0")
    before = _files(ws.path)
    real, n = atomic.stage_bytes, []

    def flaky(path, data):
        n.append(path)
        if len(n) == 3:  # two parts staged, then the manifest's write fails
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(atomic, "stage_bytes", flaky)
    parts = [Part("outcomes", "old", [Outcome("q", "b", "1", False).to_dict()], "h1"),
             Part("prompts", "new", [{"model": "q", "benchmark": "b", "prompt_id": "1"}], "h1")]
    with pytest.raises(OSError):
        ws.commit(parts, [Model(id="q")], drops=[("outcomes", "old")])
    assert _files(ws.path) == before and not (ws.path / "tables" / "prompts").exists()
    monkeypatch.setattr(atomic, "stage_bytes", real)
    ws.commit(parts, [Model(id="q")])
    assert ws.part_hash("outcomes", "old") == "h1" and ws.model("q").role == "quant"


def test_bad_outcomes_are_refused_on_write_and_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ws = Workspace(tmp_path / "w")
    for bad, what in [({"score": float("nan")}, "score"), ({"passed": 1}, "passed"),
                      ({"samples": 0}, "samples"), ({"prompt_id": ""}, "prompt_id")]:
        o = {**Outcome("q", "b", "1", True).to_dict(), **bad}
        with pytest.raises(FormatError, match=what):
            ws.add_outcomes("p", [Outcome(**o)])
    p = ws.path / "tables" / "outcomes" / "x.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table({"model": ["q"], "benchmark": ["b"], "prompt_id": ["1"], "passed": [True],
                  "score": [float("inf")]}).replace_schema_metadata({b"format_version": b"2"})
    pq.write_table(t, p)
    with pytest.raises(FormatError, match=r"x\.parquet: row 0: score inf is not finite"):
        ws.outcomes()


def test_manifest_structure_is_checked(tmp_path):
    ws = Workspace(tmp_path / "w")
    m = json.loads((ws.path / "quantfid.json").read_text())
    m["models"] = {"a": {"id": "a", "role": "boss"}}
    (ws.path / "quantfid.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match=r"models\['a'\]: role 'boss'"):
        ws.models()
    m["models"] = {"a": {"id": "a", "role": "quant"}}
    m["reference"] = "a"
    (ws.path / "quantfid.json").write_text(json.dumps(m))
    with pytest.raises(FormatError, match="reference 'a' has role 'quant'"):
        Workspace(ws.path, create=False)
