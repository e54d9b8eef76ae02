"""How well the label-free signals tracked measured accuracy (ground_truth_accuracy's tracking columns).

Known hourly series go straight into the window tables the jobs fill
(ground_truth_hour, shadow_hour, drift_results); the named query's
correlations must equal numpy's Pearson correlation of the same pairs, and
say nothing when too few hours pair up.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from analytics.schema import ANALYTICS
from analytics.shadow.queries import MIN_TRACKING_HOURS
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import named

START = datetime(2026, 11, 2)
HOURS = 10
COHORT = {"site": "atl-factory-2", "region": "us-east", "device_class": "coral-tpu", "firmware_version": "2.15.0"}
RNG = np.random.default_rng(7)
CORRECT = RNG.integers(60, 100, HOURS)              # of 100 labelled inferences an hour
AGREEMENTS = RNG.integers(50, 100, HOURS)           # of 100 compared pairs an hour
SEVERITY = RNG.uniform(0, 3, HOURS)                 # the version's dataset drift severity per hour
SITE_SEVERITY = RNG.uniform(0, 3, HOURS)            # the site cohort's


def _insert(con, table: str, values: dict) -> None:
    """One row: ``values`` and zero / NULL for every other column (NULL where the column allows it)."""
    columns = con.execute("SELECT column_name, is_nullable, data_type FROM information_schema.columns "
                          "WHERE table_name = ? ORDER BY ordinal_position", [table]).fetchall()
    row = {name: values.get(name, None if nullable == "YES" else ("" if kind == "VARCHAR" else 0))
           for name, nullable, kind in columns}
    con.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", list(row.values()))


@pytest.fixture()
def tracked(tmp_path):
    store = Store(str(tmp_path / "t.duckdb"), migrations=[COLLECTOR, ANALYTICS], readers=1)
    store.open()

    def write(con):
        for h in range(HOURS):
            hour = START + timedelta(hours=h)
            keys = {"window_start": hour, "model_name": "det", "model_version": "2", **COHORT}
            _insert(con, "ground_truth_hour", {**keys, "inferences": 100, "labelled": 100, "class_labelled": 100,
                                               "correct": int(CORRECT[h])})
            _insert(con, "shadow_hour", {**keys, "compared": 100, "agreements": int(AGREEMENTS[h])})
            for cohort, severity in (("{}", SEVERITY[h]), ('{"site":"atl-factory-2"}', SITE_SEVERITY[h])):
                _insert(con, "drift_results", {"window_start": hour, "window_length": "1h",
                                               "window_end": hour + timedelta(hours=1), "hours": 1,
                                               "model_name": "det", "model_version": "2", "cohort": cohort,
                                               "feature": "*", "status": "drifted", "severity": float(severity),
                                               "reference_kind": "pinned"})
        # An hour with too few events says nothing: it must not enter the correlation.
        _insert(con, "drift_results", {"window_start": START - timedelta(hours=1), "window_length": "1h",
                                       "window_end": START, "hours": 1, "model_name": "det", "model_version": "2",
                                       "cohort": "{}", "feature": "*", "status": "insufficient_data",
                                       "severity": 99.0, "reference_kind": "pinned"})

    store.submit(write).result()
    yield store
    store.close()


def _query(store, **params) -> dict:
    rows = named(store, "ground_truth_accuracy", since="2026-11-01T00:00:00Z", until="2026-11-03T00:00:00Z",
                 model_name="det", **params)
    assert len(rows) == 1, rows
    return rows[0]


def test_tracking_correlations_equal_numpy(tracked):
    error = 1 - CORRECT / 100
    row = _query(tracked)
    assert row["tracking_hours"] == HOURS and row["drift_tracking_hours"] == HOURS
    assert row["tracking_corr"] == pytest.approx(np.corrcoef(1 - AGREEMENTS / 100, error)[0, 1], abs=1e-12)
    assert row["drift_tracking_corr"] == pytest.approx(np.corrcoef(SEVERITY, error)[0, 1], abs=1e-12)
    # Grouped by site, or filtered to it, the site's own drift cohort is the one compared.
    site_corr = np.corrcoef(SITE_SEVERITY, error)[0, 1]
    assert _query(tracked, group_by="site")["drift_tracking_corr"] == pytest.approx(site_corr, abs=1e-12)
    assert _query(tracked, site="atl-factory-2")["drift_tracking_corr"] == pytest.approx(site_corr, abs=1e-12)
    # The drift job has no cohort per region here, nor one for the concatenated cohort: no figure, no guess.
    for group_by in ("region", "cohort"):
        row = _query(tracked, group_by=group_by)
        assert row["drift_tracking_corr"] is None and row["drift_tracking_hours"] == 0


def test_too_few_paired_hours_give_no_correlation(tracked):
    until = START + timedelta(hours=MIN_TRACKING_HOURS - 1)
    rows = named(tracked, "ground_truth_accuracy", since="2026-11-01T00:00:00Z", until=until.isoformat() + "Z",
                 model_name="det")
    assert rows[0]["drift_tracking_hours"] == MIN_TRACKING_HOURS - 1 and rows[0]["drift_tracking_corr"] is None
    assert rows[0]["tracking_hours"] == MIN_TRACKING_HOURS - 1 and rows[0]["tracking_corr"] is None
