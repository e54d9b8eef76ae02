"""Archive export benchmark (issue 13): the shipped sample's raw tables to the Parquet archive.

    python bench/archive.py                      # loads the shipped sample into a temporary file first
    python bench/archive.py --db sample.duckdb   # an already loaded sample (copied, never written)
    python bench/archive.py --quick              # only the sample's first 12 hours
    python bench/archive.py --scale 20           # every row of the sample 20 times (hours 20x larger)

1. ``fleetwatch archive export`` (a child process) on a copy of the file:
   wall time, peak RSS of the child, rows and Parquet bytes written, rows/s
   and MB/s (of Parquet written; and of DuckDB file bytes covered), archive
   bytes against the DuckDB file's bytes.
2. The same with ``--hot-period``: every exported row deleted from the
   copy and the file checkpointed; its size after, and the free blocks
   DuckDB keeps for reuse (a DuckDB file does not shrink).
3. A rerun: nothing left to export (its wall time is the cost of a pass
   with nothing to do on this file).

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.drift import run_child  # noqa: E402
from bench.ingest import machine  # noqa: E402

SAMPLE = ROOT / "sample_data" / "fleet-sample.otlp.zst"
CLI = [sys.executable, "-m", "fleetwatch", "archive", "export"]


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.parquet"))


def database_pages(db: Path) -> dict:
    from collector.store.files import file_bytes, open_database

    con = open_database(str(db), read_only=True)
    try:
        size = con.execute("SELECT block_size, total_blocks, free_blocks FROM pragma_database_size()").fetchall()[0]
    finally:
        con.close()
    return {"file_bytes": file_bytes(str(db)), "block_size": size[0], "total_blocks": size[1], "free_blocks": size[2]}


def scale_up(db: Path, times: int) -> None:
    """Every raw row ``times`` times (spans with new span ids): the same hours, ``times`` larger."""
    from analytics.archive.layout import TIME_COLUMNS
    from collector.store.files import open_database

    con = open_database(str(db))
    try:
        for table in TIME_COLUMNS:
            con.execute(f"CREATE TEMP TABLE base AS SELECT * FROM {table}")
            for k in range(1, times):
                shifted = f" REPLACE (span_id + {k} AS span_id)" if table == "span_rows" else ""
                con.execute(f"INSERT INTO {table} SELECT *{shifted} FROM base")
            con.execute("DROP TABLE base")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def export(db: Path, archive: Path, until: str, *extra: str) -> tuple[str, float, float]:
    return run_child(CLI + ["--db", str(db), "--to", str(archive), "--until", until, "--quiet", *extra])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="the shipped sample already loaded (default: load it)")
    parser.add_argument("--quick", action="store_true", help="only the sample's first 12 hours")
    parser.add_argument("--scale", type=int, default=1, metavar="N", help="every row N times (default 1)")
    args = parser.parse_args()
    until = "2026-11-02T12:00:00Z" if args.quick else "2026-11-10T00:00:00Z"
    with tempfile.TemporaryDirectory(prefix="fw-archive-bench-") as folder:
        work = Path(folder)
        source = args.db
        if source is None:
            source = work / "sample.duckdb"
            subprocess.run([sys.executable, "-m", "fleetwatch", "ingest", "--db", str(source), str(SAMPLE)],
                           check=True, capture_output=True, cwd=ROOT)
        if args.scale > 1:
            scaled = work / "scaled.duckdb"
            shutil.copyfile(source, scaled)
            scale_up(scaled, args.scale)
            source = scaled
        db = work / "fleet.duckdb"
        shutil.copyfile(source, db)
        before = database_pages(db)
        out, wall, rss = export(db, work / "archive", until)
        rows = int(out.split(" parts, ")[1].split(" rows")[0])
        parts = int(out.split("exported ")[1].split(" parts")[0])
        archive_bytes = tree_bytes(work / "archive")
        _, rerun_wall, _ = export(db, work / "archive", until)
        pruned_db = work / "pruned.duckdb"
        shutil.copyfile(source, pruned_db)
        _, prune_wall, prune_rss = export(pruned_db, work / "archive-pruned", until, "--hot-period", "2h")
        after = database_pages(pruned_db)
    result = {
        "machine": machine(), "quick": args.quick, "scale": args.scale,
        "export": {"parts": parts, "rows": rows, "wall_s": round(wall, 2), "peak_rss_mib": round(rss),
                   "rows_per_s": round(rows / wall), "parquet_mb_per_s": round(archive_bytes / wall / 1e6, 2),
                   "duckdb_mb_per_s": round(before["file_bytes"] / wall / 1e6, 2),
                   "archive_bytes": archive_bytes, "duckdb_bytes": before["file_bytes"],
                   "archive_over_duckdb": round(archive_bytes / before["file_bytes"], 3)},
        "rerun_nothing_to_do_s": round(rerun_wall, 2),
        "export_and_prune": {"wall_s": round(prune_wall, 2), "peak_rss_mib": round(prune_rss),
                             "duckdb_bytes_after": after["file_bytes"],
                             "free_blocks_after": after["free_blocks"], "total_blocks_after": after["total_blocks"]},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
