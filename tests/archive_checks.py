"""What the archive tests check of an archive against its DuckDB file, shared by tests/test_archive*.py."""

from __future__ import annotations

import shutil
from pathlib import Path

from analytics.archive import layout
from analytics.archive.views import archive_relation
from collector.store.files import open_database

#: hours of the shipped sample are all before this (Nov 2-4 2026)
AFTER_SAMPLE = "2026-11-10T00:00:00Z"


def sample_copy(sample_db: Path, tmp_path: Path, name: str = "fleet.duckdb") -> Path:
    db = tmp_path / name
    shutil.copyfile(sample_db, db)
    return db


def hour_counts(con, table: str) -> dict:
    """Rows per event-time hour of ``table`` in the file."""
    t = layout.TIME_COLUMNS[table]
    return dict(con.execute(f"SELECT date_trunc('hour', {t})::TIMESTAMP, count(*) FROM {table} GROUP BY ALL").fetchall())


def archive_hour_counts(con, root: Path, table: str) -> dict:
    """Rows per partition of ``table`` in the archive (by its date= and hour= directories)."""
    if not list(Path(root).glob(f"{table}/*/*/*.parquet")):
        return {}
    return dict(con.execute(f"SELECT date + to_hours(hour), count(*) FROM {archive_relation(root, table)} "
                            "GROUP BY ALL").fetchall())


def difference(con, root: Path, table: str, hot_sql: str | None = None) -> tuple[int, int]:
    """(rows of the file missing from the archive, rows of the archive not in the file), as multisets."""
    cols = ", ".join(layout.columns(table))
    hot = hot_sql or f"SELECT {cols} FROM {table}"
    if not list(Path(root).glob(f"{table}/*/*/*.parquet")):  # nothing archived (the sample has no logs)
        return con.execute(f"SELECT count(*) FROM ({hot})").fetchone()[0], 0
    archived = f"SELECT {cols} FROM {archive_relation(root, table)}"
    missing = con.execute(f"SELECT count(*) FROM (({hot}) EXCEPT ALL ({archived}))").fetchone()[0]
    extra = con.execute(f"SELECT count(*) FROM (({archived}) EXCEPT ALL ({hot}))").fetchone()[0]
    return missing, extra


def table_rows(db: Path) -> dict[str, int]:
    con = open_database(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in layout.TIME_COLUMNS}
    finally:
        con.close()


def snapshot(db: Path, tmp_path: Path, table: str) -> Path:
    """The table's rows as one Parquet file, to compare the archive with after the file changed."""
    out = tmp_path / f"{table}-before.parquet"
    con = open_database(str(db), read_only=True)
    try:
        con.execute(f"COPY (SELECT {', '.join(layout.columns(table))} FROM {table}) TO '{out}' (FORMAT parquet)")
    finally:
        con.close()
    return out


def visible_parts(root: Path) -> list[Path]:
    """The files a reader globbing the layout sees."""
    return sorted(Path(root).glob("*/date=*/hour=*/*.parquet"))
