"""Directories as bytes between workers and the driver."""

from __future__ import annotations

import pytest

from quantfid.errors import FormatError
from quantfid.executors.transfer import pack_dir, size, unpack_dir


def test_pack_then_unpack_is_the_same_tree(tmp_path):
    src = tmp_path / "store"
    (src / "L45").mkdir(parents=True)
    (src / "meta.json").write_text('{"a": 1}')
    (src / "L45" / "logp.bin").write_bytes(bytes(range(256)) * 3)
    files = pack_dir(src)
    assert sorted(files) == ["L45/logp.bin", "meta.json"] and size(files) == 8 + 768
    dest = unpack_dir(files, tmp_path / "ws" / "arrays" / "copy")
    assert pack_dir(dest) == files
    # an existing directory is replaced whole, never merged
    (dest / "stale").write_text("x")
    unpack_dir({"meta.json": b"{}"}, dest)
    assert pack_dir(dest) == {"meta.json": b"{}"}
    assert [p.name for p in dest.parent.iterdir()] == ["copy"]  # no temporary left beside it


@pytest.mark.parametrize("bad", ["/etc/passwd", "../up", "a/../../b", "", "."])
def test_unpack_refuses_paths_that_leave_the_directory(tmp_path, bad):
    dest = tmp_path / "d"
    with pytest.raises(FormatError, match="not a plain relative path"):
        unpack_dir({"ok": b"1", bad: b"2"}, dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []
