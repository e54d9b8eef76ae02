"""The drift job's config section, imported and trailing references, and `fleetwatch drift reference import`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timedelta

import pytest

from analytics.drift.jobs import DriftJob
from analytics.drift.section import DriftJobConfig  # registers the "drift" section
from analytics.jobs.framework import JobRunner
from analytics.schema import ANALYTICS
from collector.config import ConfigError, config_from_dict
from collector.store.database import Store
from collector.store.files import open_database
from collector.store.versions import COLLECTOR
from tests.analytics_data import read
from tests.drift_data import MODEL, ONSET, SITE



@pytest.mark.parametrize("section, message", [
    ({"reference": "weekly"}, "drift.reference: one of pinned, trailing"),
    ({"reference_days": 0}, "drift.reference_days"),
    ({"min_events": 1}, "drift.min_events: must be at least 2"),
    ({"correction": "holm"}, "drift.correction"),
    ({"alpha": 1.5}, "drift.alpha: must be in (0, 1)"),
    ({"alpha": "often"}, "drift.alpha: expected a number"),
    ({"thresholds": {"psi": -1}}, "drift.thresholds.psi: must be a positive number"),
    ({"thresholds": {"energy": 1}}, "drift.thresholds: unknown method 'energy'"),
    ({"alert_window": "1w"}, "drift.alert_window"),
    ({"cohorts": ["site", "planet"]}, "drift.cohorts: 'planet'"),
    ({"windows": "1h"}, "drift.windows: unknown key"),
])
def test_the_drift_section_names_the_bad_key(section, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({"drift": section})


def test_the_drift_section_sets_the_statistics():
    config = config_from_dict({"drift": {"min_events": 50, "correction": "benjamini-hochberg", "alpha": 0.05,
                                         "thresholds": {"psi": "0.2"}}}).section("drift")
    stats = config.drift_config()
    assert (stats.min_count, stats.correction, stats.alpha, stats.threshold("psi"), stats.threshold("ks")) == \
        (50, "benjamini-hochberg", 0.05, 0.2, 0.1)
    # The job's default: one family per window, family-wise error 1 %.
    defaults = config_from_dict({"drift": {}}).section("drift").drift_config()
    assert (defaults.correction, defaults.alpha) == ("bonferroni", 0.01)


def _copy(sample_db, tmp_path):
    db = tmp_path / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    return db


def _training_csv(db, path) -> None:
    """The training set a team would export: the version's edge inputs before the incident, as CSV."""
    con = open_database(str(db), read_only=True)
    columns = ", ".join(f"attributes ->> '$.\"ml.feature.{f}\"' AS {f}" for f in ("brightness", "contrast", "blur"))
    con.execute(f"""COPY (SELECT {columns}, attributes ->> '$."ml.feature.lighting"' AS lighting FROM span_rows
                    WHERE name = 'inference' AND inference_mode = 'edge' AND model_name = '{MODEL}'
                      AND model_version = '2.3.1' AND start_time < TIMESTAMP '{ONSET}') TO '{path}' (HEADER)""")
    con.close()


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleetwatch", "drift", "reference", "import", *args],
                          capture_output=True, text=True, timeout=120)


def test_an_imported_reference_judges_from_the_first_hour_and_flags_the_onset(sample_db, tmp_path):
    db = _copy(sample_db, tmp_path)
    train = tmp_path / "train.csv"
    _training_csv(db, train)
    done = _cli("--db", str(db), "--model", MODEL, "--version", "2.3.1", "--categorical", "lighting", str(train))
    assert done.returncode == 0, done.stderr
    assert "blur, brightness, contrast, lighting" in done.stdout
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        # Held by a server (this process), the file refuses a second import with one line.
        held = _cli("--db", str(db), "--model", MODEL, "--version", "2.3.1", str(train))
        assert held.returncode == 1 and len(held.stderr.strip().splitlines()) == 1
        assert "already open in another process" in held.stderr
        first_full = ONSET.replace(minute=0) + timedelta(hours=1)
        report = JobRunner(store, [DriftJob()]).run_due("drift_hour", first_full + timedelta(hours=1, minutes=6))
        assert report.error is None
        rows = read(store, "SELECT window_start, cohort, status, drifted_features, reference_kind FROM drift_results "
                           "WHERE window_length = '1h' AND feature = '*' AND model_name = $model "
                           "AND model_version = '2.3.1' ORDER BY window_start",
                    {"model": MODEL}).to_pylist()
    finally:
        store.close()
    assert rows[0]["window_start"] == datetime(2026, 11, 2) and {r["reference_kind"] for r in rows} == {"imported"}
    site = [r for r in rows if json.loads(r["cohort"]).get("site") == SITE]
    flagged = [r["window_start"] for r in site if r["status"] == "drifted" and "brightness" in r["drifted_features"]]
    # Before the onset the site matches its training data; the first full hour after it is flagged (so is
    # the hour of the onset, 48 of its 60 minutes shifted).
    assert first_full in flagged and flagged[0] == ONSET.replace(minute=0)
    early = [(r["window_start"], r["drifted_features"]) for r in site
             if r["window_start"] < ONSET.replace(minute=0) and r["status"] == "drifted"]
    assert early == []


def test_a_trailing_reference_is_the_previous_day(sample_db, tmp_path):
    db = _copy(sample_db, tmp_path)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        job = DriftJob(DriftJobConfig(reference="trailing"))
        assert JobRunner(store, [job]).run_due(job.name, datetime(2026, 11, 3, 2, 6)).error is None
        refs = read(store, "SELECT DISTINCT model_name, model_version, reference_kind, reference_start, "
                           "reference_end FROM drift_references WHERE model_name = $model ORDER BY ALL",
                    {"model": MODEL}).to_pylist()
        results = read(store, "SELECT DISTINCT window_start, reference_start FROM drift_results "
                              "WHERE window_length = '1h' AND model_name = $model ORDER BY ALL",
                       {"model": MODEL}).to_pylist()
    finally:
        store.close()
    day = datetime(2026, 11, 3)
    assert [(r["model_version"], r["reference_kind"], r["reference_start"], r["reference_end"]) for r in refs] == \
        [("2.3.1", "trailing", day - timedelta(days=1), day), ("2.4.0", "trailing", day - timedelta(days=1), day)]
    assert [r["window_start"] for r in results] == [day, day + timedelta(hours=1)]
