"""Fixtures shared by the test modules (helpers live in bench/harness.py and the tests/ support modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analytics.schema import ANALYTICS
from collector.store.database import Store
from collector.store.versions import COLLECTOR
from tests.analytics_data import load_fleet
from tests.c_extension import load_speedups


@pytest.fixture()
def store(tmp_path):
    """An open Store over a small known fleet (tests/analytics_data.py), with the analytics schema."""
    db = tmp_path / "fw.duckdb"
    load_fleet(db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    yield store
    store.close()


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory) -> Path:
    """The shipped sample fleet loaded once per run by ``fleetwatch ingest`` (read it, never write it)."""
    db = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    subprocess.run([sys.executable, "-m", "fleetwatch", "ingest", "--db", str(db),
                    str(SAMPLE_DIR / "fleet-sample.otlp.zst")], check=True, capture_output=True, timeout=600)
    return db


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory, sample_db) -> Path:
    """The shipped sample exported to a Parquet archive (docs/archive.md) once per run (read it, never write it)."""
    import shutil
    from datetime import datetime

    from analytics.archive.config import ArchiveConfig
    from analytics.archive.offline import export_file

    root = tmp_path_factory.mktemp("sample-archive")
    db = root / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    export_file(str(db), ArchiveConfig(path=str(root / "archive"), hot_period=0), until=datetime(2026, 11, 6))
    db.unlink()
    return root / "archive"


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole test run (local[2], 2 shuffle partitions: small data)."""
    pytest.importorskip("pyspark")
    from analytics.engines.spark_engine import spark_session

    session = spark_session("local[2]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def speedups():
    """collector.decoding._speedups, built in place if stale; skips without a C compiler, fails if the build fails."""
    module, error = load_speedups()
    if module is None:
        if error.startswith("build failed"):
            pytest.fail(error)
        pytest.skip(error)
    return module


@pytest.fixture(scope="session")
def c_decode(speedups):
    """The C trace decoder, to compare with collector.decoding.trace_decode.decode_traces_python."""
    return speedups.decode_traces
