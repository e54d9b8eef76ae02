"""End to end: `fleetwatch demo` up, Debian's chromium (Playwright) through every page of its dashboards.

Each page is opened by its URL, as a link from an alert would open it, and
counts as drawn once the app's closing caption ("Page drawn in ...") is
there, Streamlit has stopped running and every Plotly chart has its SVG. A
console error, a request outside the dashboards, a shown exception
(stException) or an error box fails the test. A screenshot of each page is
saved in the directory the test prints; with FLEETWATCH_SCREENSHOTS_TO_DOCS=1
the set is also copied into docs/screenshots/ (for docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.browser import open_page
from tests.conftest import SAMPLE_DIR

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENTS = {i["kind"]: i for i in MANIFEST["incidents"]}
PAGES = ("executive", "on-call", "debug", "drift")
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
# Opened at a page's own path (/on-call), Streamlit's frontend first looks for its server one level down
# (/on-call/_stcore/health, /on-call/_stcore/host-config), gets 404 and falls back to the root: the browser
# logs each as a console error. Those probes, and only those, are expected.
STCORE_PROBE = ("/_stcore/health", "/_stcore/host-config")
NOT_FOUND_MESSAGE = "Failed to load resource: the server responded with a status of 404 (Not Found)"


def wait_until_drawn(page, timeout_ms: int = 120_000) -> int:
    """Wait for the page's closing caption, the end of Streamlit's run and every chart's SVG; the chart count."""
    page.get_by_text("Page drawn in").first.wait_for(timeout=timeout_ms)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=timeout_ms)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].every(p => p.querySelector('.main-svg'))",
        timeout=timeout_ms)
    return page.locator(".js-plotly-plot").count()


def screenshot_whole_page(page, path: Path) -> None:
    """Streamlit scrolls inside its main block: grow the window to its height so one shot holds the page."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stAppViewContainer]')].map(e => e.scrollHeight), 900)")
    page.set_viewport_size({"width": 1400, "height": min(int(height) + 40, 6000)})
    page.wait_for_timeout(500)  # Plotly redraws at the new width
    page.screenshot(path=str(path), full_page=True)


def unexpected_problems(visit, not_found: list[str]) -> list[str]:
    """The visit's problems but Streamlit's own 404 probes (each logs one console error)."""
    probes = [url for url in not_found if url.endswith(STCORE_PROBE)]
    other_404 = [url for url in not_found if not url.endswith(STCORE_PROBE)]
    problems = [f"404: {url}" for url in other_404]
    allowed = len(probes)
    for problem in visit.problems():
        if problem == f"console: {NOT_FOUND_MESSAGE}" and allowed:
            allowed -= 1
            continue
        problems.append(problem)
    return problems


@pytest.fixture(scope="module")
def pages(running_demo, tmp_path_factory):
    """Every page visited once: its text, chart count, problems and screenshot path."""
    base = running_demo.wait_for(r"^dashboards: (\S+)", timeout=5).group(1)
    shots = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots of the dashboards: {shots}")
    visited = {}
    with open_page(base, allow=[base], viewport=(1400, 900)) as visit:
        page = visit.page
        wait_until_drawn(page)
        for path in PAGES:
            not_found: list[str] = []
            on_response = (lambda r: not_found.append(r.url) if r.status == 404 else None)
            page.on("response", on_response)
            visit.console_errors.clear()
            page.set_viewport_size({"width": 1400, "height": 900})
            page.goto(f"{base}{path}", wait_until="load")
            charts = wait_until_drawn(page)
            shot = shots / f"{path}.png"
            screenshot_whole_page(page, shot)
            visited[path] = {
                "text": page.locator("[data-testid=stMain]").inner_text(),
                "charts": charts,
                "exceptions": page.locator("[data-testid=stException]").count(),
                "errors": page.locator("[data-testid=stAlertContentError]").all_inner_texts(),
                "problems": unexpected_problems(visit, not_found),
                "screenshot": shot,
                "url": page.url,
            }
            page.remove_listener("response", on_response)
    if os.environ.get("FLEETWATCH_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_SCREENSHOTS.mkdir(exist_ok=True)
        for path in PAGES:
            shutil.copyfile(visited[path]["screenshot"], DOCS_SCREENSHOTS / f"{path}.png")
    return visited


@pytest.mark.parametrize("path", PAGES)
def test_every_page_draws_its_charts_without_an_error(pages, path):
    visited = pages[path]
    assert visited["url"].split("?")[0].endswith(f"/{path}")  # the page kept its own path
    assert visited["exceptions"] == 0 and visited["errors"] == [], visited["text"][:2000]
    assert visited["problems"] == []
    assert visited["charts"] >= 1
    assert visited["screenshot"].stat().st_size > 20_000


def test_the_on_call_page_shows_the_samples_paging_alert(pages):
    text = pages["on-call"]["text"]
    offline_site = INCIDENTS["site_offline"]["cohort"]["fleet.site"]  # paged on freshness within the last day
    assert offline_site in text and "page" in text.lower()


def test_the_drift_page_shows_the_drifted_cohort(pages):
    text = pages["drift"]["text"]
    assert INCIDENTS["input_drift"]["cohort"]["fleet.site"] in text
