"""The Parquet archive on a copy of the shipped sample: exactly the table's rows, late rows, retention."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta

import duckdb
import pyarrow.parquet as pq
import pytest

from analytics.archive import layout
from analytics.archive.backends import FileBackend
from analytics.archive.config import ArchiveConfig
from analytics.archive.exporter import ARCHIVE, ArchiveExporter
from analytics.archive.offline import export_file
from collector.config import ConfigError
from collector.store.files import open_database
from collector.store.migrations import migrate
from tests.archive_checks import AFTER_SAMPLE, archive_hour_counts, difference, hour_counts, sample_copy, visible_parts

UNTIL = datetime(2026, 11, 10)
CLI = [sys.executable, "-m", "fleetwatch", "archive", "export"]


def exporter_on(con, root) -> ArchiveExporter:
    migrate(con, [ARCHIVE])
    return ArchiveExporter(FileBackend(con), root)


def late_copies(con, hour: datetime, n: int, salt: int) -> int:
    """``n`` rows of ``hour`` again with new span ids, as a device that was offline would send them late."""
    con.execute(f"INSERT INTO span_rows SELECT * REPLACE (span_id + {salt} AS span_id) FROM span_rows "
                f"WHERE start_time >= ? AND start_time < ? ORDER BY span_id LIMIT {n}", [hour, hour + timedelta(hours=1)])
    return n


def test_export_holds_exactly_the_tables_rows(sample_db, tmp_path):
    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    run = subprocess.run(CLI + ["--db", str(db), "--to", str(root), "--until", AFTER_SAMPLE, "--quiet"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    con = open_database(str(db))
    try:
        for table in layout.TIME_COLUMNS:
            expected = hour_counts(con, table)
            assert archive_hour_counts(con, root, table) == expected, table
            assert difference(con, root, table) == (0, 0), table
            for hour, rows in expected.items():
                manifest = layout.read_manifest(layout.partition_dir(root, table, hour))
                assert manifest["complete"] and manifest["rows"] == rows
                assert [p["file"] for p in manifest["parts"]] == ["part-00000.parquet"]
        assert sum(hour_counts(con, "span_rows").values()) > 100_000  # the sample, not an empty file
        for part in visible_parts(root):
            table = part.relative_to(root).parts[0]
            schema = pq.read_schema(part)
            assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in layout.archive_schema(table)]
            assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    finally:
        con.close()
    again = subprocess.run(CLI + ["--db", str(db), "--to", str(root), "--until", AFTER_SAMPLE, "--quiet"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.startswith("exported 0 parts, 0 rows"), again.stdout + again.stderr


def test_late_rows_go_into_a_new_part_once(sample_db, tmp_path):
    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    con = open_database(str(db))
    try:
        exporter = exporter_on(con, root)
        first = exporter.export(UNTIL)
        hour = datetime(2026, 11, 3, 10)
        before = hour_counts(con, "span_rows")[hour]
        late_copies(con, hour, 25, salt=1)
        second = exporter.export(UNTIL)
        assert (second.parts, second.rows) == (1, 25)
        directory = layout.partition_dir(root, "span_rows", hour)
        assert pq.read_metadata(directory / layout.part_name(1)).num_rows == 25
        assert json.loads((directory / layout.MANIFEST).read_text())["rows"] == before + 25
        assert exporter.export(UNTIL).parts == 0  # nothing twice
        assert archive_hour_counts(con, root, "span_rows") == hour_counts(con, "span_rows")
        assert difference(con, root, "span_rows") == (0, 0)
        assert first.rows == sum(sum(hour_counts(con, t).values()) for t in layout.TIME_COLUMNS) - 25
    finally:
        con.close()


def test_retention_deletes_only_archived_rows(sample_db, tmp_path):
    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    con = open_database(str(db))
    try:
        original = {t: hour_counts(con, t) for t in layout.TIME_COLUMNS}
        exporter = exporter_on(con, root)
        exporter.export(UNTIL)
        boundary = datetime(2026, 11, 3)
        waiting = datetime(2026, 11, 2, 5)  # archived, then late rows arrive that are not yet
        late_copies(con, waiting, 10, salt=2)
        pruned = exporter.prune(boundary)
        after = hour_counts(con, "span_rows")
        assert after[waiting] == original["span_rows"][waiting] + 10  # kept whole: not all archived
        assert {h for h in after if h < boundary} == {waiting}
        assert all(after[h] == n for h, n in original["span_rows"].items() if h >= boundary)
        old = sum(n for t in layout.TIME_COLUMNS for h, n in original[t].items() if h < boundary)
        assert pruned.pruned_rows == old - original["span_rows"][waiting] > 0
        recorded = con.execute("SELECT sum(pruned_rows) FROM archive_partitions").fetchone()[0]
        assert recorded == pruned.pruned_rows
        # The next export archives the late rows; the prune after it takes the hour.
        assert exporter.export(UNTIL).rows == 10
        assert exporter.prune(boundary).pruned_rows == original["span_rows"][waiting] + 10
        assert {h for h in hour_counts(con, "span_rows") if h < boundary} == set()
        # Late rows into an hour already pruned leave the file with the record of their part.
        con.execute("INSERT INTO span_rows SELECT * EXCLUDE (archive_date) REPLACE (span_id + 3 AS span_id) "
                    "FROM span_rows_all WHERE start_time >= ? AND start_time < ? LIMIT 7",
                    [waiting, waiting + timedelta(hours=1)])
        assert exporter.export(UNTIL).rows == 7
        assert {h for h in hour_counts(con, "span_rows") if h < boundary} == set()
        # Through the archive-reading view every row is there once.
        assert con.execute("SELECT count(*) FROM span_rows_all").fetchone()[0] == \
            sum(original["span_rows"].values()) + 17
        assert difference(con, root, "span_rows", "SELECT * EXCLUDE (archive_date) FROM span_rows_all") == (0, 0)
    finally:
        con.close()


def test_config_and_cli_refuse_bad_input_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="archive.path"):
        ArchiveConfig().validate()
    with pytest.raises(ConfigError, match="hot_period: must be at least"):
        ArchiveConfig(path="a", hot_period=1800).validate()
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    run = subprocess.run(CLI + ["--db", str(not_db), "--to", str(tmp_path / "a")], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "not a DuckDB database file" in run.stderr
    bad = subprocess.run(CLI + ["--db", str(not_db), "--to", str(tmp_path / "a"), "--hot-period", "10m"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "hot_period" in bad.stderr and bad.stderr.count("\n") == 1


def test_export_file_refuses_a_file_without_telemetry(tmp_path):
    empty = tmp_path / "empty.duckdb"
    open_database(str(empty)).close()
    with pytest.raises(ValueError, match="no fleetwatch telemetry"):
        export_file(str(empty), ArchiveConfig(path=str(tmp_path / "a"), hot_period=0), UNTIL)


def test_retention_waits_for_the_analytics_jobs(sample_db, tmp_path):
    from analytics.jobs.schema import JOB_TABLES

    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    con = open_database(str(db))
    try:
        for statement in JOB_TABLES:
            con.execute(statement)
        behind = datetime(2026, 11, 2, 6, 30)  # a job still catching up on the sample's first day
        con.execute("INSERT INTO job_state VALUES ('rollup_minute', ?, 0, ?)", [behind, behind])
        original = hour_counts(con, "span_rows")
    finally:
        con.close()
    exported, pruned = export_file(str(db), ArchiveConfig(path=str(root)), UNTIL)  # hot_period 7d: up to Nov 3
    assert exported.rows > 0 and pruned.pruned_rows > 0
    con = open_database(str(db))
    try:
        kept = hour_counts(con, "span_rows")
    finally:
        con.close()
    assert min(kept) == datetime(2026, 11, 2, 6)  # what the job has not computed stays in the file
    assert kept == {h: n for h, n in original.items() if h >= datetime(2026, 11, 2, 6)}


def test_a_recent_range_opens_no_archive_file(sample_db, tmp_path):
    from analytics.api.catalog import CATALOG
    from analytics.archive.reads import reading_archive

    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    export_file(str(db), ArchiveConfig(path=str(root)), UNTIL)  # hot period 7d: Nov 1 and 2 leave the file
    queries = reading_archive(CATALOG)
    con = open_database(str(db))
    try:

        device = con.execute("SELECT device_id FROM metric_points WHERE device_id IS NOT NULL LIMIT 1").fetchall()[0][0]

        def metrics(since: str) -> int:
            bound = queries["device_metrics"].bind({"device_id": device, "since": since, "until": AFTER_SAMPLE})
            return len(con.execute(bound.sql, bound.params).fetchall())

        recent, reaching_back = metrics("2026-11-04T00:00:00Z"), metrics("2026-11-02T00:00:00Z")
        assert 0 < recent < reaching_back
        # Damage an archived part: a range reaching back into it fails, a recent one never opens it.
        victim = layout.partition_dir(root, "metric_points", datetime(2026, 11, 2, 12)) / layout.part_name(0)
        victim.write_bytes(b"not parquet")
        assert metrics("2026-11-04T00:00:00Z") == recent
        with pytest.raises(duckdb.Error, match="parquet|Parquet|magic"):
            metrics("2026-11-02T00:00:00Z")
    finally:
        con.close()


def test_a_query_written_against_span_rows_reads_the_archive(sample_db, tmp_path):
    from analytics.api.catalog import CATALOG
    from analytics.archive.reads import reading_archive

    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    whole = {"since": "2026-11-01T00:00:00Z", "until": AFTER_SAMPLE}

    def failures(con, queries) -> list:
        bound = queries["zero_tolerance_failures"].bind(whole)
        return con.execute(bound.sql, bound.params).fetchall()

    con = open_database(str(db))
    try:
        before = failures(con, CATALOG)
    finally:
        con.close()
    # The sample's failed integrity checks are on Nov 3 between 09:00 and 12:00: prune up to 12:00.
    export_file(str(db), ArchiveConfig(path=str(root), hot_period=156 * 3600), UNTIL)
    con = open_database(str(db))
    try:
        assert before and all(row[-1] < datetime(2026, 11, 3, 12) for row in before)
        assert failures(con, CATALOG) == []  # the file alone no longer has them
        assert failures(con, reading_archive(CATALOG)) == before
    finally:
        con.close()
