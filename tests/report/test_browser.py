"""The report renders in a real headless browser, offline, with no console errors, and its
verdict and cohort table start on the first screen at 1366 x 768."""

import pytest

from .browser import find_browser, render

BROWSER = find_browser()
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium on PATH (.ci/run installs Debian's chromium; "
                            "apt-get install chromium to run this check)")


def _first_screen(page) -> None:
    """A 1366 x 768 window (the page gets what is left after the browser's own frame)."""
    width, height = page.viewport
    assert width == 1366 and 600 <= height <= 768, page.viewport
    tops = page.tops
    assert tops is not None
    assert 0 <= tops["verdict"] < tops["numbers"] < tops["cohort-table"] < height - 40, tops
    assert page.open_details == 0  # everything else starts collapsed


def test_report_renders_offline_with_plots(tmp_path, volume_report):
    files = volume_report
    assert BROWSER is not None
    page = render(BROWSER, files.html, tmp_path)
    assert page.sentinel_seen, "the console capture did not work"
    assert page.console == []
    assert page.resources == []  # nothing fetched: every plot is inline
    assert len(page.images) == len(files.plots) == 5
    assert all(w > 200 and h > 150 for w, h in page.images)
    assert files.verdict.headline in page.dom and "4-bit checkpoint" in page.dom
    _first_screen(page)


def test_tiny_study_first_screen(tmp_path, tiny_report):
    """The real tiny study's report, with its caveats (numerics, unresolved zone, embedded
    reference) on the first screen: the cohort table still starts above the fold."""
    files = tiny_report
    assert len(files.verdict.caveats) >= 2
    assert BROWSER is not None
    page = render(BROWSER, files.html, tmp_path)
    assert page.console == [] and page.resources == []
    _first_screen(page)


def test_check_catches_external_resources(tmp_path):
    """The harness can fail: an external image and stylesheet are seen and fail to load."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><head><link rel="stylesheet" href="https://example.com/a.css">'
                   '</head><body><img src="https://example.com/x.png"><script>console.log("hi")'
                   '</script><div style="height: 2000px"></div><table id="cohort-table"></table>'
                   '</body></html>')
    assert BROWSER is not None
    page = render(BROWSER, bad, tmp_path)
    assert page.images == [(0, 0)]
    assert set(page.resources) == {"https://example.com/a.css", "https://example.com/x.png"}
    assert any('"hi"' in line for line in page.console)
    assert page.tops is not None and page.tops["cohort-table"] > 768 and page.tops["verdict"] == -1
