"""Drift between two files (Parquet or CSV, one column per feature), with the same library as the jobs.

::

    result = compare_files("train.parquet", "serving.csv", categorical=["lighting"])
    result.recommendation, [f.name for f in result.features if f.drifted]

Columns are numeric unless named in ``categorical`` or not numbers in the
reference (text, booleans); every column of the reference must be in the
current file. Both files are read by DuckDB (``read_parquet`` /
``read_csv``) in an in-memory database without network access; no row of
them comes into Python.
"""

from __future__ import annotations

import os
from typing import Sequence

import duckdb

from analytics.drift.config import DriftConfig
from analytics.drift.profile_sql import FeatureSpec, profile_reference, summarise
from analytics.drift.sql_text import quote_literal
from analytics.drift.verdict import DriftResult, compare_profiles
from collector.store.files import open_database

_NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def file_source(path: str) -> str:
    """The FROM-clause item reading ``path``: Parquet by extension or magic bytes, otherwise CSV."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(4)
    lower = path.lower()
    if lower.endswith((".parquet", ".pq")) or head == b"PAR1":
        return f"read_parquet({quote_literal(path)})"
    if lower.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return f"read_csv({quote_literal(path)}, nullstr=['', 'NA', 'NaN', 'null', 'NULL'])"
    raise ValueError(f"{path}: neither Parquet nor CSV (give a .parquet or .csv file)")


def _columns(con, source: str, path: str) -> dict[str, str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    except duckdb.Error as exc:
        raise ValueError(f"{path}: cannot read it: {str(exc).splitlines()[0]}") from None
    return {row[0]: row[1] for row in rows}


def feature_specs(reference_columns: dict[str, str], current_columns: dict[str, str],
                  categorical: Sequence[str] = ()) -> list[FeatureSpec]:
    unknown = [c for c in categorical if c not in reference_columns]
    if unknown:
        raise ValueError(f"--categorical names {unknown[0]!r}, which is not a column of the reference")
    absent = [c for c in reference_columns if c not in current_columns]
    if absent:
        raise ValueError(f"column {absent[0]!r} of the reference is not in the current file")
    return [FeatureSpec(name, "categorical" if name in categorical or not dtype.startswith(_NUMERIC_TYPES)
                        else "numeric") for name, dtype in reference_columns.items()]


def compare_files(reference_path: str, current_path: str, categorical: Sequence[str] = (),
                  config: DriftConfig | None = None) -> DriftResult:
    """Profile the reference file, summarise the current file on it, judge every column."""
    config = (config or DriftConfig()).validate()
    con = open_database(":memory:")
    try:
        ref_source, cur_source = file_source(reference_path), file_source(current_path)
        features = feature_specs(_columns(con, ref_source, reference_path), _columns(con, cur_source, current_path),
                                 categorical)
        if not features:
            raise ValueError(f"{reference_path}: no columns")
        try:
            reference = profile_reference(con, ref_source, features, config)
            current = summarise(con, cur_source, reference)
        except duckdb.Error as exc:  # a CSV row that does not parse, a damaged Parquet page, ...
            raise ValueError(f"cannot read the files: {str(exc).splitlines()[0]}") from None
        return compare_profiles(reference, current, config)
    finally:
        con.close()
