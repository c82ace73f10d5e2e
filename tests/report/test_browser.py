"""The report renders in a real headless browser, offline, with no console errors."""

import pytest

from quantfid import embedded
from quantfid.report.build import write_report
from quantfid.report.provenance import from_workspace
from quantfid.store.workspace import Workspace

from .browser import find_browser, render

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (.ci/run installs Debian's chromium; "
                            "apt-get install chromium to run this check)")


def test_report_renders_offline_with_plots(tmp_path, analysis):
    prov = from_workspace(Workspace(tmp_path / "ws"))
    prov["reference"] = embedded.MODEL_ID
    files = write_report(tmp_path / "out", analysis, prov)
    assert BROWSER is not None
    page = render(BROWSER, files.html, tmp_path)
    assert page.sentinel_seen, "the console capture did not work"
    assert page.console == []
    assert page.resources == []  # nothing fetched: every plot is inline
    assert len(page.images) == len(files.plots) == 5
    assert all(w > 200 and h > 150 for w, h in page.images)
    assert "Verdict" in page.dom and "4-bit checkpoint" in page.dom


def test_check_catches_external_resources(tmp_path):
    """The harness can fail: an external image and stylesheet are seen and fail to load."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://example.com/a.css">'
                   '</head><body><img src="https://example.com/x.png"><script>console.log("hi")'
                   '</script></body></html>')
    assert BROWSER is not None
    page = render(BROWSER, bad, tmp_path)
    assert page.images == [(0, 0)]
    assert set(page.resources) == {"https://example.com/a.css", "https://example.com/x.png"}
    assert any('"hi"' in line for line in page.console)
