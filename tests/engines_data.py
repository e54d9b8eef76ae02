"""Helpers of the archive-engine tests: comparing two engines' window aggregates row by row."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from analytics.engines.run import RUN_FILE

SAMPLE_SLOS = Path(__file__).resolve().parent.parent / "sample_data" / "slos.yaml"
REL_TOL = 1e-9
# Spark times hold microseconds: these nanosecond outputs are compared to within one.
NANOSECOND_TIMES = {"last_event_time", "last_received_at"}


def run_cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``fleetwatch ARGS`` in a subprocess, text output captured."""
    return subprocess.run([sys.executable, "-m", "fleetwatch", *args], capture_output=True, text=True,
                          timeout=timeout)


def run_table(out: Path, name: str) -> list[dict]:
    """The rows ``fleetwatch analytics run`` wrote for table ``name`` (nanosecond times as integers)."""
    manifest = json.loads((out / RUN_FILE).read_text())
    return table_rows(pq.read_table(out / name / manifest["file"]))


def table_rows(data: pa.Table) -> list[dict]:
    """``data`` as dicts, nanosecond times as integers (Python's datetime holds microseconds)."""
    fields = [pa.field(f.name, pa.int64()) if pa.types.is_timestamp(f.type) and f.type.unit == "ns" else f
              for f in data.schema]
    return data.cast(pa.schema(fields)).to_pylist()


def compare_tables(name: str, expected: list[dict], actual: list[dict], exact: bool = False) -> None:
    """Same rows: equal counts, keys and texts; floats within REL_TOL (sums in another order); JSON texts alike.

    ``exact``: nanosecond times compared to the nanosecond (both sides from DuckDB).
    """
    assert len(expected) == len(actual), f"{name}: {len(expected)} rows, got {len(actual)}"
    for a, b in zip(sorted(expected, key=_row_key), sorted(actual, key=_row_key)):
        assert a.keys() == b.keys(), f"{name}: columns {sorted(a)} vs {sorted(b)}"
        for column in a:
            if column == "created_at":
                continue
            x, y = a[column], b[column]
            if column in NANOSECOND_TIMES and not exact and x is not None and y is not None:
                # Spark holds microseconds; a skewed clock's correction may carry into the next one.
                assert abs(x - y) < 2000, f"{name}.{column} of {_row_key(a)}: {x} vs {y} ns"
                continue
            _same(x, y, f"{name}.{column} of {_row_key(a)}")


def _row_key(row: dict) -> tuple:
    return tuple(repr(v) for k, v in sorted(row.items())
                 if not isinstance(v, float) and k not in NANOSECOND_TIMES | {"created_at", "summary", "detail"})


def _same(x, y, where: str) -> None:
    if isinstance(x, str) and isinstance(y, str) and x[:1] in "{[" and x != y:
        try:
            x, y = json.loads(x), json.loads(y)
        except ValueError:
            pass
    if isinstance(x, dict) and isinstance(y, dict):
        assert x.keys() == y.keys(), f"{where}: keys {sorted(x)} vs {sorted(y)}"
        for k in x:
            _same(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list) and isinstance(y, list):
        assert len(x) == len(y), f"{where}: {x} vs {y}"
        for i, (p, q) in enumerate(zip(x, y)):
            _same(p, q, f"{where}[{i}]")
    elif isinstance(x, float) or isinstance(y, float):
        assert x is not None and y is not None, f"{where}: {x} vs {y}"
        assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=REL_TOL, abs_tol=1e-12), \
            f"{where}: {x} vs {y}"
    else:
        assert x == y, f"{where}: {x!r} vs {y!r}"
