"""End to end: `fleetwatch demo` up, Debian's chromium (Playwright) through every page of its dashboards.

Each page is opened by its URL, as a link from an alert would open it, and
waited for until drawn (bench/dashboard_pages.py: the app's closing
caption, Streamlit idle, every Plotly chart with its SVG). A console error,
a request outside the dashboards, a shown exception (stException) or an
error box fails the test. A screenshot of each page is saved in the
directory the test prints; with FLEETWATCH_SCREENSHOTS_TO_DOCS=1 the set is
also copied into docs/screenshots/ (for docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bench.dashboard_pages import (PAGES, chromium_page, open_and_time, page_urls, screenshot_whole_page,
                                   wait_until_settled)
from tests.browser import chromium_path
from tests.conftest import SAMPLE_DIR

# The shared demo's start-up (load and the jobs' catch-up) counts against the first test; minutes on a busy VM.
pytestmark = pytest.mark.timeout(2400)
MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
INCIDENTS = {i["kind"]: i for i in MANIFEST["incidents"]}
# The debug page for a device of the thermal-throttling incident; the on-call page over the sample's two days,
# which hold its paging incidents (the error burst, the offline site).
URLS = page_urls(INCIDENTS["thermal_throttling"]["devices"][0], on_call_range="7d")
DOCS_SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture(scope="module")
def pages(running_demo, tmp_path_factory):
    """Every page visited once: its text, chart count, problems and screenshot path."""
    base = running_demo.wait_for(r"^dashboards: (\S+)", timeout=5).group(1)
    shots = tmp_path_factory.mktemp("screenshots")
    print(f"\nscreenshots of the dashboards: {shots}")
    visited = {}
    with chromium_page(base, chromium_path()) as (page, problems):
        for path in PAGES:
            problems.clear()
            _, charts = open_and_time(page, f"{base}{URLS[path]}")
            shot = shots / f"{path}.png"
            screenshot_whole_page(page, shot)
            visited[path] = {
                # Table cells are drawn on a canvas (Streamlit's data grid); its accessible text is in the DOM.
                "text": page.locator("[data-testid=stMain]").inner_text() + "\n"
                        + page.locator("[data-testid=stMain]").text_content(),
                "charts": charts,
                "exceptions": page.locator("[data-testid=stException]").count(),
                "errors": page.locator("[data-testid=stAlertContentError]").all_inner_texts(),
                "problems": problems.unexpected(),
                "screenshot": shot,
                "url": page.url,
            }
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
    offline_site = INCIDENTS["site_offline"]["cohort"]["fleet.site"]  # paged on freshness while away
    assert f"site={offline_site}" in text and "telemetry-freshness-by-site" in text, text[-3000:]
    assert "SLOBurnRate" in text and "page" in text


def test_the_drift_page_shows_the_drifted_cohort(pages):
    text = pages["drift"]["text"]
    assert INCIDENTS["input_drift"]["cohort"]["fleet.site"] in text


def test_the_on_call_page_refreshes_itself_without_a_full_reload(running_demo):
    base = running_demo.wait_for(r"^dashboards: (\S+)", timeout=5).group(1)
    with chromium_page(base, chromium_path()) as (page, problems):
        open_and_time(page, f"{base}{URLS['on-call']}")
        page.evaluate("() => { window.__fwSamePage = true; }")  # a full reload would drop it
        first = page.get_by_text("Refreshes every").inner_text()
        page.wait_for_function("(first) => [...document.querySelectorAll('[data-testid=stCaptionContainer]')]"
                               ".some(e => e.textContent.startsWith('Refreshes every') && e.textContent !== first)",
                               arg=first, timeout=120_000)  # every 10 s (FLEETWATCH_DASHBOARD_REFRESH)
        wait_until_settled(page)
        assert page.evaluate("() => window.__fwSamePage === true")
        assert page.locator("[data-testid=stException]").count() == 0 and problems.unexpected() == []
