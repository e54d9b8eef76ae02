"""Streamlit's AppTest on the dashboards, against a real read API (no browser)::

    from tests.dashboard_app import run_page, texts, use_api

    use_api(monkeypatch, api_url, token=None)                 # FLEETWATCH_API_URL / _TOKEN for this test
    at = run_page("on-call", {"range": "7d"})                 # the app, switched to one page, run once
    assert not at.exception
    "refused the dashboards' token" in texts(at)                # every message, caption and markdown
    frame(at, "debug")                                         # the first dataframe with that column

The app reads its API from the environment, as when it is served. Streamlit's
answer cache is cleared first, so one test's answers (from another server on a
reused port) never show in the next.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "dashboards" / "app.py"
PAGES = {"executive": "views/executive.py", "on-call": "views/oncall.py", "debug": "views/debug.py",
         "drift": "views/drift.py"}


def use_api(monkeypatch, url: str, token: str | None = None, timeout_s: float | None = None) -> None:
    """Point the app at ``url`` (its settings come from the environment) for the rest of the test."""
    monkeypatch.setenv("FLEETWATCH_API_URL", url)
    for key, value in (("FLEETWATCH_API_TOKEN", token), ("FLEETWATCH_API_TIMEOUT", timeout_s)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(value))


def run_page(page: str, query: dict[str, str] | None = None) -> AppTest:
    """The app opened on ``page`` (a URL path) with ``query`` as its query string, run to the end (see use_api)."""
    st.cache_data.clear()
    at = AppTest.from_file(str(APP), default_timeout=120)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    if page != "executive":  # the root forwards to /executive
        at.switch_page(PAGES[page]).run()
    return at


def texts(at: AppTest) -> str:
    """Every message, caption, markdown and heading on the page, one per line."""
    kinds = ("title", "header", "subheader", "markdown", "caption", "info", "warning", "error", "success")
    return "\n".join(str(element.value) for kind in kinds for element in getattr(at, kind))


def frame(at: AppTest, column: str) -> pd.DataFrame:
    """The first dataframe on the page with ``column``."""
    for element in at.dataframe:
        if column in element.value.columns:
            return element.value
    raise AssertionError(f"no dataframe with a {column!r} column; texts:\n{texts(at)}")


def charts(at: AppTest) -> list[dict]:
    """The page's Plotly figures as JSON dicts."""
    import json

    return [json.loads(element.proto.spec) for element in at.get("plotly_chart")]
