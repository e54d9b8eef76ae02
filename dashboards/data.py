"""The dashboards' only way to data: the read API's client, cached briefly, failures turned into messages.

Pages never see an exception from here. They ask for a named query and get
a pandas DataFrame, or ``None`` after a clear message was put on the page::

    api = DashboardApi.from_settings(settings)     # url, token and timeout from app.py
    frame = api.load("slo_status", empty="No SLO has been evaluated yet.")
    if frame is not None:
        ...                                        # at least one row

    problem = api.problem()                       # None, or why the API cannot be read at all
    api.params("golden_signals", filters)         # only the filter parameters that query takes

    slos = Request("slo_status", {"as_of": until})
    api.prefetch(slos, Request("alert_history", window))   # asked for in parallel, first thing on a page
    frame = api.load(slos, empty="...")            # the prefetched answer: no second request

This is the only module of the dashboards that imports the project's read API
client (tests/test_layers.py): every other one asks through it.

Answers are cached for ``ttl`` seconds per (server, token, query, parameters)
with ``st.cache_data``, so a rerun (a widget change, the on-call page's
refresh) does not ask again for what it just read. Failures are not cached:
the next rerun tries again, so a page recovers by itself when the server
comes back.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from analytics.api.client import DEFAULT_URL, ApiError, ReadApiClient

PREFETCH_THREADS = 4  # the read API answers on several read connections at once
ANSWER_TTL_S = 10       # short: the on-call page refreshes every few seconds and must see new alerts
CATALOG_TTL_S = 300     # the named queries change only with a server upgrade


class Request(NamedTuple):
    """One named query with its parameters, to ask for ahead (``prefetch``) and then ``fetch`` or ``load``."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """Why an answer is missing: ``kind`` is down, slow, busy, token, refused or empty."""

    kind: str
    message: str

    def show(self) -> None:
        """Put the message on the page: a warning when something is wrong, an info when there is just no data."""
        (st.info if self.kind == "empty" else st.warning)(self.message, icon=_ICONS.get(self.kind))


_ICONS = {"down": "🔌", "slow": "⏳", "busy": "⏳", "token": "🔒", "refused": "⚠️", "empty": "ℹ️"}


def problem_of(error: ApiError, url: str) -> Problem:
    """The page's wording for one failed request (the server's own words kept for a refused one)."""
    text = str(error)
    if error.status in (401, 403):
        return Problem("token", f"The read API at {url} refused the dashboards' token ({text}). "
                                "Set FLEETWATCH_API_TOKEN (or --token) to a token in the server's api.read list.")
    if error.status == 504 or (error.status == 0 and "timed out" in text):
        return Problem("slow", f"The read API at {url} did not answer in time ({text}). "
                               "It may be busy catching up; this page tries again on its next refresh.")
    if error.status == 503:
        return Problem("busy", f"The read API at {url} is busy ({text}); try again in a few seconds.")
    if error.status == 0:
        return Problem("down", f"The read API at {url} cannot be reached: is `fleetwatch serve` running? ({text})")
    return Problem("refused", f"The read API refused the request: {text}")


@st.cache_data(ttl=ANSWER_TTL_S, show_spinner=False, max_entries=512)
def _answer(url: str, token: str | None, timeout: float, name: str, params: tuple[tuple[str, str], ...]
            ) -> pd.DataFrame:
    result = ReadApiClient(url, token=token, timeout=timeout).query(name, **dict(params))
    return pd.DataFrame(result.rows, columns=result.names)


@st.cache_data(ttl=ANSWER_TTL_S, show_spinner="Building the drift report…", max_entries=16)
def _report(url: str, token: str | None, timeout: float, model: str, version: str | None,
            cohort: tuple[tuple[str, str], ...], window: str | None) -> bytes:
    return ReadApiClient(url, token=token, timeout=timeout).drift_report(model, version, dict(cohort) or None, window)


@st.cache_data(ttl=CATALOG_TTL_S, show_spinner=False)
def _catalog(url: str, token: str | None, timeout: float) -> dict[str, list[str]]:
    queries = ReadApiClient(url, token=token, timeout=timeout).queries()
    return {q["name"]: [p["name"] for p in q["params"]] for q in queries}


def check_url(url: str) -> None:
    """ValueError unless ``url`` looks like a read API's (http[s]://host:port)."""
    ReadApiClient(url)


class DashboardApi:
    """One read API as the pages see it; see the module docstring."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 15.0) -> None:
        check_url(url)
        self.url = url.rstrip("/")
        self.token = token or None
        self.timeout = timeout
        self._prefetched: dict[tuple, pd.DataFrame | Problem] = {}

    def problem(self) -> Problem | None:
        """Whether the API can be read at all (its catalog of queries answers)."""
        try:
            _catalog(self.url, self.token, self.timeout)
        except ApiError as exc:
            return problem_of(exc, self.url)
        return None

    def accepts(self, name: str) -> list[str]:
        """The parameters of one named query ([] when the catalog cannot be read)."""
        try:
            return _catalog(self.url, self.token, self.timeout).get(name, [])
        except ApiError:
            return []

    def params(self, name: str, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` without the ones the query does not take or that are unset."""
        accepted = set(self.accepts(name))
        return {k: v for k, v in values.items() if k in accepted and v not in (None, "")}

    def fetch(self, name: str | Request, **params: Any) -> pd.DataFrame | Problem:
        """The rows of one named query (maybe none), or the problem that stopped it."""
        if isinstance(name, Request):
            name, params = name.name, {**name.params, **params}
        key = (name, _frozen(params))
        if key in self._prefetched:  # once: a later call (the on-call page's refresh) asks the cache again
            return self._prefetched.pop(key)
        try:
            return _answer(self.url, self.token, self.timeout, *key)
        except ApiError as exc:
            return problem_of(exc, self.url)

    def prefetch(self, *requests: Request) -> None:
        """Ask for several answers at once, so that a page waits for about its slowest answer, not for all of
        them in a row; its ``fetch`` and ``load`` calls then take them (a failure included: it is shown there,
        not asked for twice)."""
        script = get_script_run_ctx()  # st.cache_data in the pool's threads, as in the page's own

        def ask(request: Request) -> tuple[tuple, pd.DataFrame | Problem]:
            add_script_run_ctx(threading.current_thread(), script)
            return (request.name, _frozen(request.params)), self.fetch(request)

        unique = list({(r.name, _frozen(r.params)): r for r in requests}.values())
        with ThreadPoolExecutor(min(PREFETCH_THREADS, len(unique) or 1)) as pool:
            self._prefetched.update(pool.map(ask, unique))

    def drift_report(self, model: str, version: str | None, cohort: dict[str, str] | None,
                     window: str | None) -> bytes | Problem:
        """The server's self-contained HTML drift report (cached briefly, like the answers), or the problem."""
        try:
            return _report(self.url, self.token, self.timeout, model, version,
                           tuple(sorted((cohort or {}).items())), window)
        except ApiError as exc:
            return problem_of(exc, self.url)

    def load(self, name: str | Request, *, empty: str, **params: Any) -> pd.DataFrame | None:
        """The rows, or ``None`` after showing why there are none (``empty`` when the answer had no rows)."""
        answer = self.fetch(name, **params)
        if isinstance(answer, Problem):
            answer.show()
            return None
        if answer.empty:
            Problem("empty", empty).show()
            return None
        return answer


def _frozen(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Hashable, ordered parameters with times as RFC 3339 UTC text (the cache key and the request)."""
    items = []
    for key, value in sorted(params.items()):
        if value is None:
            continue
        if isinstance(value, pd.Timestamp):
            value = value.tz_convert("UTC") if value.tzinfo else value.tz_localize("UTC")
            value = value.strftime("%Y-%m-%dT%H:%M:%SZ")
        items.append((key, str(value)))
    return tuple(items)
