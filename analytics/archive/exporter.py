"""Exporting closed hours of the raw tables to the Parquet archive, and pruning what is archived.

The exporter keeps its state in the DuckDB file (``archive_partitions``:
per table and hour, the parts written, the rows they hold and how many of
those rows are still in the file; ``archive_parts``: one row per part file)
and the same in each partition's ``_manifest.json``, written after its parts::

    exporter = ArchiveExporter(FileBackend(con), "/srv/archive")    # or StoreBackend(store) in serve
    report = exporter.export(closed_before=datetime(2026, 11, 5))  # every hour ending by then
    exporter.prune(hot_boundary=datetime(2026, 11, 3))             # delete archived rows older than that

An hour is exported when its hot rows outnumber the archived rows the file
still holds: the first time, all its rows go into ``part-00000``; rows
that arrive late for it later go into the next part, found as the hour's
rows EXCEPT ALL the rows of its parts (or, once the hour was pruned, all
its rows). Each part is written to a hidden temporary file, fsynced and
renamed (:func:`analytics.archive.layout.write_atomically`), then listed
in the manifest (renamed into place the same way), then recorded in the
file in one transaction. A crash before the record leaves a whole part
(and perhaps a manifest naming it) that the state does not know: the next
run writes the same part number again over it, with the same rows and any
that arrived since, so rows are never doubled; rows are deleted only once
recorded as archived, so never lost.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from analytics.archive import layout
from analytics.archive.backends import Backend
from analytics.archive.views import refresh_views
from collector.store.migrations import Migration, Migrations

log = logging.getLogger("fleetwatch.archive")

HOUR = timedelta(hours=1)

ARCHIVE_DDL = [
    """
    CREATE TABLE IF NOT EXISTS archive_partitions (
        table_name VARCHAR NOT NULL,
        hour TIMESTAMP NOT NULL,          -- the partition: event time hour (UTC)
        parts INTEGER NOT NULL,           -- part files written, numbered 0 .. parts - 1
        rows BIGINT NOT NULL,             -- rows in those parts
        bytes BIGINT NOT NULL,            -- their size on disk
        hot_rows BIGINT NOT NULL,         -- of those rows, how many the DuckDB file still holds
        pruned_rows BIGINT NOT NULL,      -- rows deleted from the DuckDB file after archiving
        exported_at TIMESTAMP NOT NULL,
        pruned_at TIMESTAMP               -- last time its rows were deleted from the file
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS archive_parts (
        table_name VARCHAR NOT NULL,
        hour TIMESTAMP NOT NULL,
        part INTEGER NOT NULL,
        file VARCHAR NOT NULL,            -- relative to the archive root
        rows BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        pruned BOOLEAN NOT NULL,          -- its rows are no longer in the DuckDB file
        written_at TIMESTAMP NOT NULL
    )
    """,
]

ARCHIVE = Migrations("archive", [Migration(1, "archive_partitions, archive_parts", ARCHIVE_DDL)])


class ArchiveError(RuntimeError):
    """The archive and the DuckDB file disagree in a way the exporter will not guess about."""


@dataclass
class ExportReport:
    """What one export or prune did, in total and per table."""

    parts: int = 0
    rows: int = 0
    bytes: int = 0
    pruned_rows: int = 0
    pruned_hours: int = 0
    removed_temp_files: int = 0
    rows_by_table: dict[str, int] = field(default_factory=dict)
    pruned_by_table: dict[str, int] = field(default_factory=dict)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class ArchiveExporter:
    """Exports closed hours and prunes archived ones; see the module docstring.

    ``backend`` gives a read cursor (for the COPY, which must not hold up the
    writer) and runs write transactions; ``on_part`` / ``on_prune`` are
    called per part written and per hour pruned (the process's metrics).
    One exporter per archive directory at a time.
    """

    def __init__(self, backend: Backend, root: str | os.PathLike, *, tables: tuple[str, ...] = tuple(layout.TIME_COLUMNS),
                 on_part: Callable[[str, int, int], None] | None = None,
                 on_prune: Callable[[str, int], None] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        unknown = set(tables) - set(layout.TIME_COLUMNS)
        if unknown:
            raise ValueError(f"cannot archive {sorted(unknown)}: the archived tables are {list(layout.TIME_COLUMNS)}")
        self.backend = backend
        self.root = Path(root).resolve()
        self.tables = tables
        self.on_part = on_part
        self.on_prune = on_prune
        self.progress = progress
        self._swept = False

    # -- export ----------------------------------------------------------
    def export(self, closed_before: datetime, should_stop: Callable[[], bool] = lambda: False) -> ExportReport:
        """Write every hour ending at or before ``closed_before`` that has rows not yet archived, oldest first."""
        report = ExportReport()
        if not self._swept and self.root.exists():
            # Only a killed run leaves temporary files: one sweep at start-up finds them all.
            report.removed_temp_files = layout.remove_temp_files(self.root)
        self._swept = True
        self.root.mkdir(parents=True, exist_ok=True)
        for table in self.tables:
            for hour, hot_rows, parts in self._due_hours(table, closed_before):
                if should_stop():
                    return report
                rows, size = self._export_hour(table, hour, hot_rows, parts)
                report.parts += 1
                report.rows += rows
                report.bytes += size
                report.rows_by_table[table] = report.rows_by_table.get(table, 0) + rows
                if self.progress is not None:
                    self.progress(f"{table} {hour:%Y-%m-%d %H}:00 part {parts}: {rows} rows, {size} bytes")
        return report

    def _due_hours(self, table: str, closed_before: datetime) -> list[tuple[datetime, int, int]]:
        """(hour, archived rows the file holds, parts) of each closed hour with rows not archived yet."""
        t = layout.TIME_COLUMNS[table]
        sql = f"""
            WITH hot AS (
                SELECT date_trunc('hour', {t})::TIMESTAMP AS hour, count(*) AS n
                FROM {table} WHERE {t} < $closed GROUP BY ALL
            )
            SELECT hot.hour, coalesce(p.hot_rows, 0) AS hot_rows, coalesce(p.parts, 0) AS parts, hot.n
            FROM hot LEFT JOIN archive_partitions p ON p.table_name = $table AND p.hour = hot.hour
            WHERE hot.hour + INTERVAL 1 HOUR <= $closed ORDER BY hot.hour
        """
        rows = self.backend.read(lambda cur: cur.execute(sql, {"closed": closed_before, "table": table}).fetchall())
        due = []
        for hour, hot_rows, parts, n in rows:
            if n > hot_rows:
                due.append((hour, hot_rows, parts))
            elif n < hot_rows:  # rows archived and then deleted by something other than the pruner
                log.warning("%s %s: the file holds %d rows but %d were archived from it; nothing is exported",
                            table, hour, n, hot_rows)
        return due

    def _hour_sql(self, table: str, hour: datetime, hot_rows: int, files: list[str]) -> str:
        t = layout.TIME_COLUMNS[table]
        cols = ", ".join(layout.columns(table))
        hot = f"SELECT {cols} FROM {table} WHERE {t} >= '{hour}' AND {t} < '{hour + HOUR}'"
        if hot_rows == 0:  # nothing of this hour left in the file is archived: every row is new
            new = hot
        else:
            listed = ", ".join(_sql_string(str(self.root / f)) for f in files)
            new = f"({hot}) EXCEPT ALL (SELECT {cols} FROM read_parquet([{listed}]))"
        # Not sorted: rows arrive roughly in time order already, and a sort doubled the cost of a part (measured).
        return new

    def _export_hour(self, table: str, hour: datetime, hot_rows: int, parts: int) -> tuple[int, int]:
        files = self.backend.read(lambda cur: [r[0] for r in cur.execute(
            "SELECT file FROM archive_parts WHERE table_name = ? AND hour = ? ORDER BY part",
            [table, hour]).fetchall()])
        if len(files) != parts:
            raise ArchiveError(f"{table} {hour}: archive_parts lists {len(files)} parts, archive_partitions {parts}")
        directory = layout.partition_dir(self.root, table, hour)
        final = directory / layout.part_name(parts)
        t = layout.TIME_COLUMNS[table]
        written: list[int] = []

        def copy(tmp: Path) -> None:
            def run(cur: duckdb.DuckDBPyConnection) -> None:
                # One snapshot for the count and the copy: rows arriving meanwhile wait for the next run.
                cur.execute("BEGIN TRANSACTION")
                try:
                    now_hot = cur.execute(f"SELECT count(*) FROM {table} WHERE {t} >= ? AND {t} < ?",
                                          [hour, hour + HOUR]).fetchone()[0]
                    n = cur.execute(f"COPY ({self._hour_sql(table, hour, hot_rows, files)}) TO "
                                    f"{_sql_string(str(tmp))} (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
                finally:
                    cur.execute("ROLLBACK")
                if n != now_hot - hot_rows:
                    raise ArchiveError(
                        f"{table} {hour:%Y-%m-%d %H}:00: {now_hot} rows in the file, {hot_rows} of them archived, "
                        f"but {n} rows differ from the archived parts; the archive or the file was changed by hand")
                written.append(n)
            self.backend.read(run)

        layout.write_atomically(final, copy)
        rows, size = written[0], final.stat().st_size
        relative = str(final.relative_to(self.root))
        # The manifest lists the new part before the file records it: a crash in between leaves a
        # manifest naming a whole part whose rows the rerun writes again under the same name.
        self._write_manifest(table, hour, extra=(parts, relative, rows, size, _now()))
        pruned = self.backend.write(lambda con: self._record_part(con, table, hour, parts, relative, rows, size))
        if self.on_part is not None:
            self.on_part(table, rows, size)
        if pruned and self.on_prune is not None:
            self.on_prune(table, pruned)
        return rows, size

    def _record_part(self, con: duckdb.DuckDBPyConnection, table: str, hour: datetime, part: int, file: str,
                     rows: int, size: int) -> int:
        """Record a part in the caller's transaction; returns the rows pruned with it (late rows of a pruned hour)."""
        now = _now()
        con.execute("INSERT INTO archive_parts VALUES (?, ?, ?, ?, ?, ?, false, ?)",
                    [table, hour, part, file, rows, size, now])
        updated = con.execute(
            "UPDATE archive_partitions SET parts = parts + 1, rows = rows + ?, bytes = bytes + ?, "
            "hot_rows = hot_rows + ?, exported_at = ? WHERE table_name = ? AND hour = ? RETURNING pruned_at",
            [rows, size, rows, now, table, hour]).fetchall()
        if not updated:
            con.execute("INSERT INTO archive_partitions VALUES (?, ?, 1, ?, ?, ?, 0, ?, NULL)",
                        [table, hour, rows, size, rows, now])
        elif updated[0][0] is not None:
            # Late rows of an hour already pruned: they leave the file with the record of their part.
            pruned = self._prune_hour(con, table, hour)
            if not pruned:  # more rows came meanwhile: the views leave the part out until the hour is pruned
                refresh_views(con, self.root, table)
            return pruned
        return 0

    # -- manifests -------------------------------------------------------
    def _write_manifest(self, table: str, hour: datetime, extra: tuple) -> None:
        """The partition's manifest: its recorded parts and ``extra``, the one just written."""
        parts = self.backend.read(lambda cur: cur.execute(
            "SELECT part, file, rows, bytes, written_at FROM archive_parts WHERE table_name = ? AND hour = ? "
            "ORDER BY part", [table, hour]).fetchall()) + [extra]
        manifest = {
            "table": table, "date": f"{hour:%Y-%m-%d}", "hour": hour.hour, "complete": True,
            "rows": sum(p[2] for p in parts), "parts": [
                {"file": Path(p[1]).name, "rows": p[2], "bytes": p[3], "written_at": p[4].isoformat() + "Z"}
                for p in parts],
        }
        layout.write_manifest(layout.partition_dir(self.root, table, hour), manifest)

    # -- retention -------------------------------------------------------
    def prune(self, hot_boundary: datetime, should_stop: Callable[[], bool] = lambda: False) -> ExportReport:
        """Delete from the file the rows of every archived hour that ends by ``hot_boundary``.

        Only rows recorded as archived go: an hour whose rows outnumber its
        archived ones (late rows not exported yet) is left whole for now.
        """
        report = ExportReport()
        for table in self.tables:
            hours = self.backend.read(lambda cur: [r[0] for r in cur.execute(
                "SELECT hour FROM archive_partitions WHERE table_name = ? AND hot_rows > 0 "
                "AND hour + INTERVAL 1 HOUR <= ? ORDER BY hour", [table, hot_boundary]).fetchall()])
            for hour in hours:
                if should_stop():
                    return report
                pruned = self.backend.write(lambda con: self._prune_hour(con, table, hour))
                if pruned:
                    if self.on_prune is not None:
                        self.on_prune(table, pruned)
                    report.pruned_hours += 1
                    report.pruned_rows += pruned
                    report.pruned_by_table[table] = report.pruned_by_table.get(table, 0) + pruned
        if report.pruned_rows:
            # Deleted rows free their space only at a checkpoint (whole row groups are then dropped).
            self.backend.checkpoint()
        return report

    def _prune_hour(self, con: duckdb.DuckDBPyConnection, table: str, hour: datetime) -> int:
        """Delete the hour's rows if every one of them is archived (in the caller's transaction); how many."""
        t = layout.TIME_COLUMNS[table]
        hot_rows = con.execute("SELECT hot_rows FROM archive_partitions WHERE table_name = ? AND hour = ?",
                               [table, hour]).fetchone()[0]
        in_file = con.execute(f"SELECT count(*) FROM {table} WHERE {t} >= ? AND {t} < ?",
                              [hour, hour + HOUR]).fetchone()[0]
        if in_file != hot_rows or hot_rows == 0:
            return 0  # late rows not archived yet: the next export takes them, a later prune the hour
        con.execute(f"DELETE FROM {table} WHERE {t} >= ? AND {t} < ?", [hour, hour + HOUR])
        con.execute("UPDATE archive_partitions SET hot_rows = 0, pruned_rows = pruned_rows + ?, pruned_at = ? "
                    "WHERE table_name = ? AND hour = ?", [in_file, _now(), table, hour])
        con.execute("UPDATE archive_parts SET pruned = true WHERE table_name = ? AND hour = ?", [table, hour])
        refresh_views(con, self.root, table)  # readers find the rows in the archive from this commit on
        return in_file


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
