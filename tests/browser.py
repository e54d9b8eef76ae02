"""Headless Debian chromium through Playwright, for tests that open what fleetwatch serves or writes.

::

    from tests.browser import open_page

    with open_page(f"file://{path}", allow=[f"file://{path}"]) as visit:
        visit.page.screenshot(path=tmp_path / "report.png", full_page=True)
    assert visit.problems() == []        # console errors, page errors, requests outside `allow`

Only the system's chromium is used (``playwright install`` downloads and
fails on a closed network). Without it the test is skipped with the
reason, except under CI (``CI=true``), where a missing browser fails it:
``.ci/run`` installs Debian's chromium first. Every request whose URL does
not start with one of ``allow`` is aborted and counted, so a page that
reaches for the network fails its test instead of hanging on it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

CHROMIUM = "/usr/bin/chromium"
# Quiet on a closed network: no first-run pages, no background or component traffic (docs: FACTS.md).
QUIET_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync")


def chromium_path() -> str:
    """The system chromium; skips the test without one, fails it under CI."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path:
        return path
    reason = f"no chromium at {CHROMIUM} or on PATH (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must have it (.ci/run installs it)")
    pytest.skip(reason)


@dataclass
class Visit:
    """What one page did: its Playwright ``page`` while open, and every problem it showed."""

    page: object = None
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return ([f"console: {m}" for m in self.console_errors] + [f"page error: {m}" for m in self.page_errors]
                + [f"request outside the allowed URLs (aborted): {u}" for u in self.blocked_requests])


@contextmanager
def open_page(url: str, allow: Sequence[str], viewport: tuple[int, int] = (1280, 900),
              wait_until: str = "load") -> Iterator[Visit]:
    """Open ``url`` in headless chromium, aborting and counting requests to anything not in ``allow``."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    visit = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(QUIET_FLAGS))
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: visit.page_errors.append(str(e)))

            def route(r) -> None:
                if any(r.request.url.startswith(a) for a in allow):
                    r.continue_()
                else:
                    visit.blocked_requests.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.goto(url, wait_until=wait_until)
            visit.page = page
            yield visit
        finally:
            browser.close()
