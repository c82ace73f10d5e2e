"""The Ray worker's body, in-process: it refuses another quantfid or other model files, finds
out whether the workspace is shared, and unpacks stores it is sent once."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from quantfid.errors import MismatchError, QuantfidError
from quantfid.executors.fingerprint import Fingerprint, fingerprint
from quantfid.executors.worker import Worker
from quantfid.models import parse_spec
from quantfid.pool import ModelPool


@pytest.fixture
def worker():
    threads = torch.get_num_threads()
    spec = ModelPool(parse_spec("embedded", role="reference")).spec()
    w = Worker(spec, threads=1)
    yield w
    w.close()
    torch.set_num_threads(threads)  # the worker sets the process's torch threads


def test_hello_refuses_another_version_or_other_code(worker, tmp_path):
    mine = fingerprint()
    assert len(mine.code) == 64 and mine.code == fingerprint().code
    for other in (Fingerprint("0.0.1", mine.code), Fingerprint(mine.version, "0" * 64)):
        with pytest.raises(QuantfidError, match="install the same quantfid on every node"):
            worker.hello(other, str(tmp_path), "probe", "n")
    with pytest.raises(QuantfidError, match="units before hello"):
        worker.run(object(), {})


def test_hello_finds_out_whether_the_workspace_is_shared(worker, tmp_path, capsys):
    (tmp_path / "probe").write_text("nonce-1")
    assert worker.hello(fingerprint(), str(tmp_path), "probe", "nonce-1")["shared"] is True
    assert worker.workspace == tmp_path
    assert "workspace shared" in capsys.readouterr().err  # the line Ray forwards to the driver
    # another machine's workspace at that path (another nonce), or none at all
    assert worker.hello(fingerprint(), str(tmp_path), "probe", "nonce-2")["shared"] is False
    assert worker.hello(fingerprint(), str(tmp_path / "absent"), "probe", "n")["shared"] is False
    assert worker.workspace is None and worker.threads == 1


def test_verify_refuses_other_model_files_or_another_identity(worker):
    pool = ModelPool(parse_spec("embedded", role="reference"))
    ref = pool.ref_ref()  # hashes the file; loads nothing
    worker.verify(ref)
    other = dataclasses.replace(ref, content="f" * 64)
    with pytest.raises(MismatchError, match=r"differs from the driver's .* same model files"):
        worker.verify(other)
    moved = dataclasses.replace(ref, identity=dataclasses.replace(ref.identity, device="cuda"))
    with pytest.raises(MismatchError, match=r"would run as .*set the device explicitly"):
        worker.verify(moved)


def test_stores_sent_by_value_are_unpacked_once(worker, tmp_path):
    worker.hello(fingerprint(), str(tmp_path), "probe", "n")
    rel = "arrays/reference/prose-64-llamacpp-0123456789abcdef"
    root = worker._materialize({rel: {"meta.json": b"{}", "L1/x.bin": b"\x00\x01"}})
    assert (root / rel / "L1" / "x.bin").read_bytes() == b"\x00\x01"
    worker._materialize({rel: {"meta.json": b"changed"}})  # already there: not sent again
    assert (root / rel / "meta.json").read_bytes() == b"{}"
