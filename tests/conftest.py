"""Session fixtures shared across test folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.fixtures.tiny_study import write_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Fixed thread counts for the BLAS/OpenMP runtimes in this process and every subprocess the
# tests start (environments are copied from this one): a precaution for the bitwise tests
# (Ray vs local, kill and resume), which compare runs made under different machine load.
# Their failures turned out to come from numba's disk cache (quantfid.metrics.kernel.CACHE);
# load alone did not change the bits in runs made with these settings.
os.environ.setdefault("MKL_DYNAMIC", "FALSE")
os.environ.setdefault("OMP_DYNAMIC", "FALSE")


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny study's config file (``tests/fixtures/tiny_study.py``)."""
    return write_config(tmp_path_factory.mktemp("tiny-config"))


@pytest.fixture(scope="session")
def tiny_study(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny study's workspace (run once per session; copy it before changing it)."""
    from quantfid import cli

    out = tmp_path_factory.mktemp("tiny-study") / "ws"
    assert cli.main(["study", str(tiny_config), "--out", str(out), "--json"]) == 0
    return out
