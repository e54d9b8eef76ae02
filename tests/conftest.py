"""Fixtures shared by the test modules (helpers live in bench/harness.py and the tests/ support modules)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from analytics.schema import ANALYTICS
from bench.demo_process import DemoProcess
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


SAMPLE_END = datetime(2026, 11, 5)  # after the sample's last event (sample_data/manifest.json)


@pytest.fixture(scope="session")
def analysed_sample_db(sample_db, tmp_path_factory) -> Path:
    """The sample with the drift, shadow and ground-truth jobs and the hourly rollups run over all of it.

    Read it or copy it (shutil.copyfile) before writing; it is built once per run (about a minute).
    """
    from analytics.drift.jobs import DriftJob
    from analytics.jobs.framework import JobRunner
    from analytics.rollups import GoldenSignalsHour
    from analytics.shadow.jobs import shadow_jobs

    db = tmp_path_factory.mktemp("analysed-sample") / "sample.duckdb"
    shutil.copyfile(sample_db, db)
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        runner = JobRunner(store, [DriftJob(), *shadow_jobs(), GoldenSignalsHour()])
        for name in runner.jobs:
            report = runner.run_due(name, SAMPLE_END)
            assert report.error is None, (name, report.error)
    finally:
        store.close()
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


@pytest.fixture(scope="session")
def served_sample(tmp_path_factory, analysed_sample_db):
    """`fleetwatch serve` over a copy of the analysed sample with the shipped SLOs, every job caught up.

    Yields the running :class:`bench.harness.CollectorProcess` (``api_url``; no API token). The jobs
    continue from the analysed sample's watermarks; the SLO evaluator walks every minute from the
    sample to the wall clock, so this takes minutes: share it.
    """
    from bench.harness import CollectorProcess, jobs_caught_up, wait_until

    db = tmp_path_factory.mktemp("served-sample") / "sample.duckdb"
    shutil.copyfile(analysed_sample_db, db)
    config = {"analytics": {"slos": str(SAMPLE_DIR / "slos.yaml"), "workers": 2}}
    with CollectorProcess(db, config=config, startup_timeout=180) as server:
        # Ten jobs: rollups, device hours, health, shadow, ground truth, drift, two SLI jobs and the evaluator.
        wait_until(lambda: jobs_caught_up(server.metrics_text(), jobs=10), timeout=1800,
                   what="the analytics jobs to catch up on the sample")
        yield server


@pytest.fixture(scope="session")
def running_demo(tmp_path_factory) -> DemoProcess:
    """One ``fleetwatch demo`` on a fresh data directory, up and caught up (bench/demo_process.py).

    Shared by the demo and dashboard tests; tests/test_demo.py's last tests stop it with SIGTERM.
    """
    demo = DemoProcess(tmp_path_factory.mktemp("demo") / "demo.duckdb", echo=sys.stderr)
    demo.start()
    try:
        demo.wait_for(r"^demo ready in", timeout=1200)
        yield demo
    finally:
        demo.stop()
