"""What app.py hands the page it runs: the read API, the view from the filter bar, the fleet's choices.

    ctx = page_context()          # in a page script (dashboards/views/*.py)
    ctx.api.load("slo_status", empty="...", **ctx.api.params("slo_status", ctx.view.api_filters()))
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboards.data import DashboardApi
from dashboards.filter_bar import Fleet
from dashboards.settings import Settings
from dashboards.view import View

_KEY = "fw_context"


@dataclass(frozen=True)
class PageContext:
    """Everything a page needs besides Streamlit; ``filtered(name)`` is the view's filters that query takes."""

    settings: Settings
    api: DashboardApi
    fleet: Fleet
    view: View

    def filtered(self, name: str, *, window: bool = True) -> dict:
        """The view's filters (and its time range, unless ``window`` is False) as query ``name`` takes them."""
        values = {**(self.view.window() if window else {}), **self.view.api_filters()}
        return self.api.params(name, values)


def publish(context: PageContext) -> None:
    st.session_state[_KEY] = context


def page_context() -> PageContext:
    return st.session_state[_KEY]
