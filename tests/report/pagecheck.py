"""Helpers for the report tests: the page's tables as text, and the page in a real headless Chromium.

Chromium (Debian package `chromium`, installed by scripts/install_lab_deps.sh) is driven from its command line:
`--headless=new --screenshot` loads the file, lays it out, takes a screenshot and exits; with
`--enable-logging=stderr --v=0` every message the page writes to the console (script errors included) is logged as
an `INFO:CONSOLE` line on stderr. No DevTools protocol, no driver package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_LAB = "NEMOTRON_REQUIRE_LAB"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip where Chromium cannot run, saying why; where the lab is required (NEMOTRON_REQUIRE_LAB=1, as in CI),
    fail instead, naming the same reason (as tests/spark/sparklab.py does)."""
    if os.environ.get(REQUIRE_LAB, "").strip() not in ("", "0"):
        pytest.fail(f"{REQUIRE_LAB}=1 and the report's browser check cannot run here: {reason}", pytrace=False)
    pytest.skip(reason)


def chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("no chromium on PATH (Debian package chromium; scripts/install_lab_deps.sh installs it)")


def screenshot(page: Path, shot: Path, size: str = "1200,2000", timeout_s: float = 60) -> list[str]:
    """Open `page` in headless Chromium, write a PNG screenshot to `shot`; returns the console lines logged."""
    # --no-sandbox: Chromium refuses its sandbox as root and in many containers; the page is our own local file
    argv = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={shot.parent / 'chromium-profile'}", f"--screenshot={shot}",
            f"--window-size={size}", page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    if not shot.is_file():
        raise AssertionError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}")
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


class Tables(HTMLParser):
    """Every <table id=...> of a page as its rows of cell texts (header row first), and every src/href."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.links += [attrs[k] for k in ("src", "href") if attrs.get(k)]
        if tag == "table":
            self._table = attrs.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
