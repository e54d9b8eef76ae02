"""fleetwatch dashboards: executive, on-call, debug and drift pages over a running server's read API.

Start it headless on the loopback interface, with Streamlit's usage statistics
off (nothing phones home from an air-gapped site)::

    streamlit run dashboards/app.py --server.headless=true --server.address=127.0.0.1 \\
        --browser.gatherUsageStats=false -- --api http://127.0.0.1:4319

or ``python -m dashboards --api http://127.0.0.1:4319 --port 8501``, which passes
exactly those flags (``dashboards.launch``). The token comes from
``FLEETWATCH_API_TOKEN`` (or ``--token``), the URL from ``--api`` or
``FLEETWATCH_API_URL``. Pages live at ``/executive`` (the default), ``/on-call``,
``/debug`` and ``/drift``; the filter bar's state is in the query string, so
``/on-call?range=6h&site=ams-factory-1`` opens exactly that view.

The app reads only through the read API (``dashboards.data``); it never opens
a DuckDB file.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import streamlit as st

from dashboards.context import PageContext, publish
from dashboards.data import DashboardApi, Problem
from dashboards.filter_bar import Fleet, filter_bar
from dashboards.settings import Settings
from dashboards.view import View

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = (("executive.py", "Executive", "executive"), ("oncall.py", "On-call", "on-call"),
         ("debug.py", "Debug", "debug"), ("drift.py", "Drift", "drift"))


def main() -> None:
    st.set_page_config(page_title="fleetwatch", layout="wide")  # no page_icon: a Material favicon is fetched from Google
    # No icons: Material icons are fetched from Google, and the headless browser has no emoji font.
    pages = {path: st.Page(VIEWS / file, title=title, url_path=path) for file, title, path in PAGES}
    # Streamlit serves the default page at the root, not at its url_path: the root is a page of its own that
    # forwards to /executive with the query string, so every page has the path a link names.
    home = st.Page(lambda: st.switch_page(pages["executive"], query_params=st.query_params.to_dict()),
                   title="fleetwatch", url_path="home", default=True)
    page = st.navigation([home, *pages.values()], position="hidden")
    st.title(page.title)
    links = st.sidebar.container()
    view = _frame()
    for link in pages.values():
        links.page_link(link, query_params=view.query() if view else None)
    if view is not None:
        started = time.perf_counter()
        page.run()
        # The last element of every page: a browser test (and a user) knows the page is complete.
        st.caption(f"Page drawn in {time.perf_counter() - started:.2f} s (server side).")


def _frame() -> View | None:
    """Settings, the API check and the filter bar; None after a message when the page cannot be drawn."""
    try:
        settings = Settings.from_sources(sys.argv[1:], os.environ)
        settings.validate()
    except ValueError as exc:
        st.error(f"The dashboards' settings are wrong: {exc}")
        return None
    api = DashboardApi(settings.api_url, settings.token, settings.timeout_s)
    problem = api.problem()
    fleet = Fleet.read(api) if problem is None else problem
    if isinstance(fleet, Problem):
        fleet.show()
        return None
    view = filter_bar(fleet)
    if fleet.newest is None:
        Problem("empty", f"No telemetry has reached the server at {settings.api_url} yet: the pages fill in "
                         "once devices report (try `fleetwatch demo` for a sample fleet).").show()
        return None
    st.caption(f"{view.describe()} · newest data {fleet.newest:%Y-%m-%d %H:%M:%S} UTC · read API {settings.api_url}")
    publish(PageContext(settings, api, fleet, view))
    return view


main()
