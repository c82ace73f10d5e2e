from __future__ import annotations

import shutil
from pathlib import Path

import pytest

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture
def fix() -> Path:
    return FIX


@pytest.fixture
def copy_fixture(tmp_path: Path):
    """Copy a fixture file or directory into tmp_path (to edit it in a test)."""

    def _copy(rel: str) -> Path:
        src = FIX / rel
        dst = tmp_path / "copy" / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        return dst

    return _copy
