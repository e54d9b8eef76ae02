"""``kill -9`` of ``fleetwatch archive export`` mid-export, then a rerun: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from analytics.archive import layout
from collector.store.files import open_database
from tests.archive_checks import AFTER_SAMPLE, archive_hour_counts, difference, hour_counts, sample_copy, visible_parts

CLI = [sys.executable, "-m", "fleetwatch", "archive", "export"]


def test_kill_9_mid_export_then_rerun(sample_db, tmp_path):
    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    args = CLI + ["--db", str(db), "--to", str(root), "--until", AFTER_SAMPLE]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while len(visible_parts(root)) < 40:
            assert proc.poll() is None, "the export finished before it could be killed"
            assert time.monotonic() < deadline, "the export wrote too few parts to be killed mid-way"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = visible_parts(root)
    assert 40 <= len(killed_at) < 150
    for part in killed_at:  # whatever a reader sees is a whole file
        assert pq.read_metadata(part).num_rows > 0
        assert part.name.startswith("part-") and not part.name.endswith(layout.TMP_SUFFIX)

    rerun = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert not list(root.glob(f"*/date=*/hour=*/.*{layout.TMP_SUFFIX}"))  # the killed run's temp file is gone
    con = open_database(str(db))
    try:
        for table in layout.TIME_COLUMNS:
            assert archive_hour_counts(con, root, table) == hour_counts(con, table), table
            assert difference(con, root, table) == (0, 0), table
        recorded = con.execute("SELECT count(*), sum(rows) FROM archive_parts").fetchone()
        assert recorded == (len(visible_parts(root)), sum(sum(hour_counts(con, t).values()) for t in layout.TIME_COLUMNS))
    finally:
        con.close()
    assert {p.name for p in visible_parts(root)} == {layout.part_name(0)}  # one part per hour, none doubled
    for part in visible_parts(root):
        manifest = layout.read_manifest(part.parent)
        assert manifest["rows"] == pq.read_metadata(part).num_rows
