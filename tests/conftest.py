"""Fixtures shared by the test modules (helpers live in bench/harness.py and tests/*_data.py)."""

from __future__ import annotations

import pytest

from analytics.schema import ANALYTICS
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import load_fleet


@pytest.fixture()
def store(tmp_path):
    """An open Store over a small known fleet (tests/analytics_data.py), with the analytics schema."""
    db = tmp_path / "fw.duckdb"
    load_fleet(db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    yield store
    store.close()
