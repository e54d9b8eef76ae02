"""The drift library on the shipped sample: the input-drift incident at atl-factory-2 is found, nothing else."""

from __future__ import annotations

import shutil

import pytest

from analytics.drift import DriftConfig, FeatureSpec, compare_profiles, profile_reference, summarise
from collector.store.files import open_database

FEATURES = [FeatureSpec(name, kind, f"attributes ->> '$.\"ml.feature.{name}\"'")
            for name, kind in (("brightness", "numeric"), ("contrast", "numeric"), ("blur", "numeric"),
                               ("lighting", "categorical"))]
EXPRS = {f.name: f.sql for f in FEATURES}
COHORT = ("model_name = 'defect-detector' AND inference_mode = 'edge' AND site = $site "
          "AND start_time >= $start AND start_time < $end")
BEFORE = {"start": "2026-11-02 00:00:00", "end": "2026-11-02 19:00:00"}   # the incident starts at 19:12
AFTER = {"start": "2026-11-03 00:00:00", "end": "2026-11-04 00:00:00"}


@pytest.fixture(scope="module")
def con(sample_db, tmp_path_factory):
    copy = tmp_path_factory.mktemp("drift-sample") / "sample.duckdb"
    shutil.copyfile(sample_db, copy)
    connection = open_database(str(copy), read_only=True)
    yield connection
    connection.close()


def _compare(con, site: str):
    reference = profile_reference(con, "span_rows", FEATURES, where=COHORT, params={"site": site, **BEFORE})
    current = summarise(con, "span_rows", reference, EXPRS, where=COHORT, params={"site": site, **AFTER})
    return compare_profiles(reference, current, DriftConfig())


def test_the_drifted_site_flags_brightness_and_lighting_only(con):
    result = _compare(con, "atl-factory-2")
    assert {f.name for f in result.drifted} == {"brightness", "lighting"}
    brightness = next(f for f in result.features if f.name == "brightness")
    assert brightness.values["wasserstein"] == pytest.approx(1.5, abs=0.3)   # the manifest's 1.5-std shift
    assert result.recommendation == "retrain"


def test_a_site_without_the_incident_flags_nothing(con):
    site = con.execute("SELECT site FROM span_rows WHERE model_name = 'defect-detector' AND site <> 'atl-factory-2' "
                       "AND site IS NOT NULL GROUP BY site ORDER BY count(*) DESC LIMIT 1").fetchone()[0]
    result = _compare(con, site)
    assert result.drifted == [] and result.recommendation == "no action"
