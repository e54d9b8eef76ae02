"""The dashboards with no data, an API that is down, slow or refuses the token, and bad settings (AppTest).

Every page says what is wrong in one message and shows no traceback.
"""

from __future__ import annotations

import socket

import pytest

from bench.harness import CollectorProcess, free_port
from tests.analytics_data import READ, analytics_config
from tests.dashboard_app import PAGES, run_page, use_api

TITLES = {"executive": "Executive", "on-call": "On-call", "debug": "Debug", "drift": "Drift"}


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    """`fleetwatch serve` with the analytics jobs on a new file: no telemetry yet; READ is its API token."""
    db = tmp_path_factory.mktemp("empty") / "empty.duckdb"
    with CollectorProcess(db, config=analytics_config()) as server:
        yield server


@pytest.mark.parametrize("page", PAGES)
def test_no_data_yet(empty_server, monkeypatch, page):
    use_api(monkeypatch, empty_server.api_url, token=READ)
    at = run_page(page)
    assert not at.exception
    assert [i.value for i in at.info] == [
        f"No telemetry has reached the server at {empty_server.api_url} yet: the pages fill in once devices "
        "report (try `fleetwatch demo` for a sample fleet)."]
    assert at.title[0].value == TITLES[page] and not at.warning and not at.error


@pytest.mark.parametrize("page", PAGES)
def test_a_refused_token(empty_server, monkeypatch, page):
    use_api(monkeypatch, empty_server.api_url, token="not-a-token")
    at = run_page(page)
    assert not at.exception
    [warning] = at.warning
    assert warning.value.startswith(f"The read API at {empty_server.api_url} refused the dashboards' token (")
    assert "(HTTP 401)" in warning.value and "FLEETWATCH_API_TOKEN" in warning.value


@pytest.mark.parametrize("page", PAGES)
def test_an_api_that_is_down(monkeypatch, page):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    use_api(monkeypatch, url)
    at = run_page(page)
    assert not at.exception
    [warning] = at.warning
    assert warning.value.startswith(f"The read API at {url} cannot be reached: is `fleetwatch serve` running?")


def test_an_api_that_does_not_answer_in_time(monkeypatch):
    # A socket that accepts connections (the kernel's backlog) and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        use_api(monkeypatch, url, timeout_s=0.5)
        at = run_page("on-call")
    assert not at.exception
    [warning] = at.warning
    assert warning.value.startswith(f"The read API at {url} did not answer in time (")


def test_a_malformed_api_url(monkeypatch):
    use_api(monkeypatch, "ftp://127.0.0.1:4319")
    at = run_page("executive")
    assert not at.exception
    assert at.error[0].value.startswith("The dashboards' settings are wrong: the read API URL must look like")
    assert not at.warning and not at.info
