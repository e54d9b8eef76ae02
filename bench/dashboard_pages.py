"""The dashboards' pages in headless chromium: when a page is drawn, a whole-page screenshot, its problems.

Shared by tests/test_dashboards_e2e.py and bench/dashboards.py, so that the
test and the benchmark agree on what "drawn" means::

    with chromium_page(base) as (page, problems):
        seconds, charts = open_and_time(page, f"{base}{page_urls('cam-7')['on-call']}")
        screenshot_whole_page(page, Path("on-call.png"))
        problems.unexpected()         # console errors, failed requests, but Streamlit's own 404 probes

A page is drawn when the app's closing caption ("Page drawn in ...") is
there, Streamlit's status widget has gone, no element is faded as stale
and every Plotly chart (``stPlotlyChart``) has its SVG (``.main-svg``),
and it stays so for 0.75 s (Streamlit loads Plotly lazily); a watcher in
the page notes when that state began.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# The flags of tests/browser.py (benchmarks import no test module): quiet on a closed network (FACTS.md).
QUIET_FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync")
PAGES = ("executive", "on-call", "debug", "drift")
# Opened at a page's own path (/on-call), Streamlit's frontend first looks for its server one level down
# (/on-call/_stcore/health, /on-call/_stcore/host-config), gets 404 and falls back to the root; the
# browser logs each as a console error. Those probes, and only those, are expected.
STCORE_PROBES = ("/_stcore/health", "/_stcore/host-config")
NOT_FOUND_MESSAGE = "Failed to load resource: the server responded with a status of 404 (Not Found)"


@dataclass
class PageProblems:
    """Console errors, page errors, requests outside the dashboards and 404s seen since the last ``clear``."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def clear(self) -> None:
        for seen in (self.console_errors, self.page_errors, self.blocked, self.not_found):
            seen.clear()

    def unexpected(self) -> list[str]:
        """Every problem but Streamlit's 404 probes and the one console error each of them logs."""
        probes = sum(url.endswith(STCORE_PROBES) for url in self.not_found)
        problems = [f"404: {url}" for url in self.not_found if not url.endswith(STCORE_PROBES)]
        problems += [f"page error: {e}" for e in self.page_errors]
        problems += [f"request outside the dashboards: {url}" for url in self.blocked]
        for message in self.console_errors:
            if message == NOT_FOUND_MESSAGE and probes:
                probes -= 1
            else:
                problems.append(f"console: {message}")
        return problems


@contextmanager
def chromium_page(base_url: str, executable: str = CHROMIUM) -> Iterator[tuple[object, PageProblems]]:
    """A headless chromium page that can reach only ``base_url``'s host, with every other request recorded.

    Other hosts do not resolve (``--host-resolver-rules``), so a request for them fails at once; it is
    recorded as ``blocked`` all the same. The page is not routed through Playwright, because routing turns
    the browser's HTTP cache off: a second open of the dashboards then reloads all of Streamlit's scripts,
    which no real browser does (they are served ``immutable``).
    """
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    problems = PageProblems()
    host = urlsplit(base_url).hostname
    only_local = f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[*QUIET_FLAGS, only_local])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(_WATCHER_JS)
            page.on("console", lambda m: problems.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.page_errors.append(str(e)))
            page.on("response", lambda r: problems.not_found.append(r.url) if r.status == 404 else None)
            page.on("request", lambda r: None if r.url.startswith((base_url, "data:", "blob:"))
                    else problems.blocked.append(r.url))
            yield page, problems
        finally:
            browser.close()


# Streamlit loads Plotly lazily: when the closing caption is there, a chart may still be missing from the
# DOM. Drawn: the caption there, Streamlit's status widget gone, no element faded as stale, no skeleton,
# every chart with its SVG. A watcher in the page checks that every 20 ms from the navigation on and keeps
# when the state last changed (window.__fwDrawn.since, ms since the navigation), so the time is the page's,
# not when a poll from Playwright happened to look; the state must then hold for STABLE_MS.
STABLE_MS = 750
_WATCHER_JS = """(() => {
  window.__fwDrawn = {key: null, since: 0};
  setInterval(() => {
    const charts = document.querySelectorAll('[data-testid=stPlotlyChart]');
    const drawn = [...document.querySelectorAll('[data-testid=stCaptionContainer]')]
        .some(e => e.textContent.includes('Page drawn in'))
      && !document.querySelector('[data-testid=stStatusWidget]')
      && !document.querySelector('[data-stale=true]') && !document.querySelector('[data-testid=stSkeleton]')
      && [...charts].every(c => c.querySelector('.main-svg'));
    const key = charts.length + ':' + drawn;
    if (key !== window.__fwDrawn.key) window.__fwDrawn = {key, since: performance.now()};
  }, 20);
})();"""
_SETTLED_JS = f"""() => window.__fwDrawn.key && window.__fwDrawn.key.endsWith(':true')
  && performance.now() - window.__fwDrawn.since > {STABLE_MS}"""


def wait_until_drawn(page, timeout_ms: int = 120_000) -> int:
    """Wait until the page is drawn and stays so for STABLE_MS (see _WATCHER_JS); the number of charts."""
    wait_until_settled(page, timeout_ms)
    return page.locator("[data-testid=stPlotlyChart]").count()


def wait_until_settled(page, timeout_ms: int = 120_000) -> None:
    """Drawn (see _WATCHER_JS), for STABLE_MS."""
    page.wait_for_function(_SETTLED_JS, timeout=timeout_ms, polling=100)


def page_urls(device: str, on_call_range: str | None = None) -> dict[str, str]:
    """Each page's URL path: the debug page for ``device`` (as a link from another page opens it)."""
    on_call = f"on-call?range={on_call_range}" if on_call_range else "on-call"
    return {"executive": "executive", "on-call": on_call, "debug": f"debug?device={device}", "drift": "drift"}


def open_and_time(page, url: str, timeout_ms: int = 120_000) -> tuple[float, int]:
    """Open ``url`` (a full load, as a link does) and wait until drawn: (seconds to drawn, charts).

    The seconds run from the navigation's start to the moment the page reached its drawn state (not to
    the end of the STABLE_MS that confirms it).
    """
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(url, wait_until="commit")
    charts = wait_until_drawn(page, timeout_ms)
    return page.evaluate("() => window.__fwDrawn.since") / 1000, charts


def screenshot_whole_page(page, path: Path) -> None:
    """Streamlit scrolls inside its main block: grow the window to its height so one shot holds the page."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight), 900)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 8000)})
    page.wait_for_timeout(500)  # Plotly redraws at the new size
    wait_until_settled(page)  # a page that refreshes itself (on-call) may have started a rerun meanwhile
    page.screenshot(path=str(path), full_page=True)
