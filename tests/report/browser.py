"""Render an HTML file in headless Chromium with no network and report what the page saw.

A copy of the page gets a tiny script appended that, on ``load``, records each image's
natural size, every resource the page tried to fetch (Resource Timing lists failed fetches
too), the viewport height and the top (in CSS pixels from the top of the page) of every
element with an id among ``TRACKED``, and logs one sentinel console message, which proves
the console capture works. The window is 1366 x 768.
Console messages come from ``--enable-logging=stderr`` (lines with ``:CONSOLE``).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SENTINEL = "quantfid-browser-check-sentinel"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0",
         # no network: every proxied request and every host lookup fails
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--virtual-time-budget=10000", "--window-size=1366,768", "--hide-scrollbars")
TRACKED = ("verdict", "numbers", "cohort-table", "zones-table")
_PROBE = ("<script>window.addEventListener('load', () => {"
          "const b = document.body;"
          "b.setAttribute('data-qf-images', [...document.images].map("
          "i => i.naturalWidth + 'x' + i.naturalHeight).join(' '));"
          "b.setAttribute('data-qf-resources', performance.getEntriesByType('resource')"
          ".map(e => e.name).join(' '));"
          "b.setAttribute('data-qf-viewport', window.innerWidth + 'x' + window.innerHeight);"
          "b.setAttribute('data-qf-tops', " + repr(list(TRACKED)) + ".map(i => {"
          "const e = document.getElementById(i);"
          "return i + '=' + (e ? Math.round(e.getBoundingClientRect().top + window.scrollY) : -1);"
          "}).join(' '));"
          "b.setAttribute('data-qf-open-details', document.querySelectorAll('details[open]').length);"
          f"console.error('{SENTINEL}');"
          "});</script>")


def find_browser() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class PageCheck:
    images: list[tuple[int, int]]
    resources: list[str]
    console: list[str]  # console lines other than the sentinel
    sentinel_seen: bool
    dom: str
    viewport: tuple[int, int] = (0, 0)
    tops: dict[str, int] | None = None  # element id -> top in CSS px (-1: absent)
    open_details: int = 0


def render(browser: str, page: Path, workdir: Path, timeout: float = 90) -> PageCheck:
    probe = workdir / "probe.html"
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise AssertionError(f"{page} has no </body>")
    probe.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    cmd = [browser, *FLAGS, f"--user-data-dir={workdir / 'profile'}", "--dump-dom", probe.as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if res.returncode != 0:
        raise AssertionError(f"chromium exited {res.returncode}: {res.stderr[-2000:]}")
    dom = res.stdout

    def attr(name: str) -> str:
        m = re.search(rf'{name}="([^"]*)"', dom)
        if m is None:
            raise AssertionError(f"the page's load handler did not run (no {name}); stderr: "
                                 f"{res.stderr[-2000:]}")
        return html.unescape(m.group(1))

    imgs = [tuple(int(x) for x in s.split("x")) for s in attr("data-qf-images").split()]
    resources = attr("data-qf-resources").split()
    console = [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]
    others = [ln for ln in console if SENTINEL not in ln]
    vw, vh = (int(x) for x in attr("data-qf-viewport").split("x"))
    tops = {k: int(v) for k, v in (t.split("=") for t in attr("data-qf-tops").split())}
    return PageCheck(images=[(w, h) for w, h in imgs], resources=resources, console=others,
                     sentinel_seen=len(others) < len(console), dom=dom, viewport=(vw, vh),
                     tops=tops, open_details=int(attr("data-qf-open-details")))
