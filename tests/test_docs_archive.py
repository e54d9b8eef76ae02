"""docs/archive.md's examples run on an archive of the shipped sample: DuckDB, polars, and Spark when installed."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.store.files import open_database
from tests.archive_checks import AFTER_SAMPLE, sample_copy

DOC = Path(__file__).resolve().parent.parent / "docs" / "archive.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def archived_sample(sample_db, tmp_path_factory) -> tuple[Path, int]:
    """An archive of the whole sample, and how many spans the sample has."""
    folder = tmp_path_factory.mktemp("archive-docs")
    db, root = sample_copy(sample_db, folder), folder / "archive"
    subprocess.run([sys.executable, "-m", "fleetwatch", "archive", "export", "--db", str(db), "--to", str(root),
                    "--until", AFTER_SAMPLE, "--quiet"], check=True, capture_output=True, timeout=600)
    con = open_database(str(db), read_only=True)
    try:
        spans = con.execute("SELECT count(*) FROM span_rows").fetchall()[0][0]
    finally:
        con.close()
    return root, spans


def test_the_doc_shows_duckdb_polars_and_spark():
    assert [("duckdb" in b, "polars" in b, "pyspark" in b) for b in BLOCKS] == [
        (True, False, False), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_archive_doc_example_reads_every_span(archived_sample, index):
    block = BLOCKS[index]
    if "pyspark" in block and importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark is not installed (pip install 'fleetwatch[spark]')")
    root, spans = archived_sample
    scope = {"ARCHIVE": str(root)}
    exec(compile(block, f"docs/archive.md python block {index}", "exec"), scope)
    assert scope["rows"] == spans > 0
