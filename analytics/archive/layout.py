"""Where the archive keeps what, and how a file appears in it whole or not at all.

The layout is a contract with every engine that reads the archive
(DuckDB, polars, Spark; docs/archive.md)::

    ARCHIVE/<table>/date=YYYY-MM-DD/hour=HH/part-NNNNN.parquet   zstd, one file per export of that hour
    ARCHIVE/<table>/date=YYYY-MM-DD/hour=HH/_manifest.json       written last: the partition's complete parts

``<table>`` is a raw table of :data:`collector.store.schema.TABLES` that
holds telemetry (``ingest_log``, the dedup ledger, is not archived); a
file's columns are exactly the table's, in its order and types. A row goes
to the hour of its raw event time (:data:`TIME_COLUMNS`, UTC, before any
clock-skew correction). Temporary files start with a dot and end in
``.tmp``; the manifest starts with an underscore: readers that glob
``*.parquet`` (DuckDB, polars) or skip hidden files (Spark) never see
either. Use::

    path = partition_dir(root, "span_rows", datetime(2026, 11, 2, 13))
    write_atomically(path / part_name(0), lambda tmp: copy_to(tmp))   # tmp, fsync, rename, fsync dir
    write_manifest(path, {...})
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pyarrow as pa

from collector.store.schema import DERIVED_COLUMNS, NOT_NULL, TABLES

#: archived table -> SQL for the event time its rows are partitioned by (raw, UTC).
#: A log record may lack its time (OTLP allows it): then its observed time, then its receive time.
TIME_COLUMNS: dict[str, str] = {
    "span_rows": "start_time",
    "metric_points": "time",
    "histogram_points": "time",
    "log_rows": "coalesce(time, observed_time, received_at)",
}

MANIFEST = "_manifest.json"
TMP_SUFFIX = ".tmp"


def columns(table: str) -> list[str]:
    """The archived table's columns, in its order (the decoded ones, then those the writer derives)."""
    return [c.name for c in TABLES[table] + DERIVED_COLUMNS.get(table, [])]


def archive_schema(table: str) -> pa.Schema:
    """The Arrow schema of the table's part files."""
    return pa.schema([pa.field(c.name, c.arrow_type, c.name not in NOT_NULL[table])
                      for c in TABLES[table] + DERIVED_COLUMNS.get(table, [])])


def partition_dir(root: str | os.PathLike, table: str, hour: datetime) -> Path:
    return Path(root) / table / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def part_name(index: int) -> str:
    """Part files are numbered per partition: 0 the first export of the hour, 1, 2, ... late rows."""
    return f"part-{index:05d}.parquet"


def table_glob(root: str | os.PathLike, table: str) -> str:
    return str(Path(root) / table / "*" / "*" / "*.parquet")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}{TMP_SUFFIX}")


def write_atomically(final: Path, write: Callable[[Path], None]) -> None:
    """Have ``write(tmp)`` fill a temporary file beside ``final``, then fsync it and rename it into place.

    A reader sees the old file (or none) until the rename, then the whole new
    one; a crash leaves at most a hidden ``.tmp`` file, which
    :func:`remove_temp_files` sweeps away.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def write_manifest(directory: Path, manifest: dict) -> None:
    """The partition's marker, written last: which parts (and rows) it holds once complete."""
    text = json.dumps(manifest, indent=1, sort_keys=True, default=str)
    write_atomically(directory / MANIFEST, lambda tmp: tmp.write_text(text))


def read_manifest(directory: Path) -> dict | None:
    try:
        return json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None


def remove_temp_files(root: str | os.PathLike) -> int:
    """Delete the temporary files a killed export left behind; returns how many."""
    removed = 0
    for tmp in Path(root).glob(f"*/date=*/hour=*/.*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
