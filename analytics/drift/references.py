"""Drift references of the scheduled jobs: what is monitored per model version, and what it is compared with.

::

    features = monitored_features(read, model, version, start, end)   # ml.feature.* and the predictions
    hours = versions_by_hour(read, start, end)                        # {hour: [(model, version), ...]}
    reference = pinned_reference(read, model, version, start, end, features, config)   # {name: Summary}
    table = reference_table(model, version, reference, "pinned", start, end, window_start=hour)
    stored = load_references(read)                                   # {(model, version): StoredReference}
    import_reference("fleet.duckdb", "defect-detector", "2.4.0", "train.parquet", categorical=["lighting"])

A reference is one row per model x version x feature in ``drift_references``:
its :class:`~analytics.drift.profiles.Summary` as JSON (the layout every
current window of that version is summarised on), the reference kind
(``pinned``, ``trailing``, ``imported``) and the window it covers. An
imported reference wins over the others of its version.

Features are discovered from the reference window's edge inference spans:
every ``ml.feature.<name>`` key of ``span_rows.attributes`` is a feature,
numeric when most of its values are JSON numbers, categorical otherwise;
``prediction_label`` (categorical), ``prediction_score`` and
``prediction_value`` (numeric) are monitored when the reference has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import pyarrow as pa

from analytics.drift.config import DriftConfig
from analytics.drift.files import feature_specs as file_feature_specs
from analytics.drift.files import file_source
from analytics.drift.profile_sql import FeatureSpec, profile_reference
from analytics.drift.profiles import Summary
from analytics.drift.sql_text import quote_literal, run_read
from collector.store.marks import raw_time_bounds
from collector.store.schema import corrected_time

FEATURE_PREFIX = "ml.feature."
PREDICTIONS = (FeatureSpec("prediction_label", "categorical", "prediction_label"),
               FeatureSpec("prediction_score", "numeric", "prediction_score"),
               FeatureSpec("prediction_value", "numeric", "prediction_value"))
EVENT_TIME = corrected_time("start_time")
# Edge inferences of one model version in [$start, $end) of skew-corrected time; the raw-time
# bounds ($lo, $hi, from ingest_marks) let DuckDB skip row groups.
EDGE_WINDOW = ("name = 'inference' AND inference_mode = 'edge' AND start_time >= make_timestamp_ns($lo) "
               f"AND start_time <= make_timestamp_ns($hi) AND {EVENT_TIME} >= $start AND {EVENT_TIME} < $end")
EDGE_INFERENCES = f"model_name = $model AND model_version = $version AND {EDGE_WINDOW}"
EVENT_HOUR = f"date_trunc('hour', {EVENT_TIME})::TIMESTAMP"

REFERENCES_DDL = """
CREATE TABLE IF NOT EXISTS drift_references (
    window_start TIMESTAMP,            -- the drift job hour that computed it (NULL: imported)
    model_name VARCHAR NOT NULL, model_version VARCHAR NOT NULL,
    feature VARCHAR NOT NULL, kind VARCHAR NOT NULL,  -- numeric | categorical
    reference_kind VARCHAR NOT NULL,   -- pinned | trailing | imported
    reference_start TIMESTAMP, reference_end TIMESTAMP,   -- the window it summarises (NULL: imported)
    source VARCHAR,                    -- the imported file
    summary VARCHAR NOT NULL,          -- analytics.drift.profiles.Summary as JSON (its layout included)
    created_at TIMESTAMP NOT NULL
)
"""

REFERENCE_SCHEMA = pa.schema([
    ("window_start", pa.timestamp("us")), ("model_name", pa.string()), ("model_version", pa.string()),
    ("feature", pa.string()), ("kind", pa.string()), ("reference_kind", pa.string()),
    ("reference_start", pa.timestamp("us")), ("reference_end", pa.timestamp("us")), ("source", pa.string()),
    ("summary", pa.string()), ("created_at", pa.timestamp("us")),
])


@dataclass(frozen=True)
class StoredReference:
    """One model version's reference: its kind, window and ``{feature: Summary}``."""

    model: str
    version: str
    kind: str
    start: datetime | None
    end: datetime | None
    summaries: dict[str, Summary]
    window_start: datetime | None = None   # the job hour that wrote it (None: imported)


def window_params(read, start: datetime, end: datetime) -> dict:
    """Parameters of :data:`EDGE_WINDOW` (raw-time bounds looked up in ingest_marks)."""
    lo, hi = run_read(read, raw_time_bounds("span_rows"), {"start": start, "end": end})[0]
    return {"start": start, "end": end, "lo": 0 if lo is None else lo, "hi": -1 if hi is None else hi}


def edge_params(read, model: str, version: str, start: datetime, end: datetime) -> dict:
    """Parameters of :data:`EDGE_INFERENCES`."""
    return {"model": model, "version": version, **window_params(read, start, end)}


def versions_in(read, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """The model versions with edge inferences in [start, end), sorted."""
    rows = run_read(read, f"SELECT DISTINCT model_name, model_version FROM span_rows WHERE {EDGE_WINDOW} "
                          "AND model_name IS NOT NULL AND model_version IS NOT NULL", window_params(read, start, end))
    return sorted((m, v) for m, v in rows)


def versions_by_hour(read, start: datetime, end: datetime) -> dict[datetime, list[tuple[str, str]]]:
    """:func:`versions_in` of every hour of [start, end) from one scan: ``{hour: [(model, version), ...]}``."""
    rows = run_read(read, f"SELECT DISTINCT {EVENT_HOUR} AS hour, model_name, model_version FROM span_rows "
                          f"WHERE {EDGE_WINDOW} AND model_name IS NOT NULL AND model_version IS NOT NULL",
                    window_params(read, start, end))
    hours: dict[datetime, list[tuple[str, str]]] = {}
    for hour, model, version in sorted(rows):
        hours.setdefault(hour, []).append((model, version))
    return hours


def feature_path(name: str) -> str:
    """The JSON path of feature ``name`` in ``span_rows.attributes``."""
    return '$."' + FEATURE_PREFIX + name + '"'


def feature_expr(name: str) -> str:
    """SQL for feature ``name``'s value in ``span_rows.attributes`` (JSON text)."""
    return f"(attributes ->> {quote_literal(feature_path(name))})"


def edge_source(names: Sequence[str], columns: Sequence[str] = (), condition: str = "") -> tuple[str, dict[str, str]]:
    """A FROM item of :data:`EDGE_INFERENCES` with every feature of ``names`` parsed out of one JSON parse per
    span, and each feature's expression over it: ``(source, {name: expr})``. ``columns`` are carried along.

    Parsing the attributes is what a scan of spans costs; one ``json_extract_string`` with every
    feature's path does it once per span instead of once per feature.
    """
    predictions = {p.name for p in PREDICTIONS}
    paths = [n for n in names if n not in predictions]
    exprs = {n: n if n in predictions else f"fw_json[{paths.index(n) + 1}]" for n in names}
    items = [*sorted(predictions & set(names)), *columns]
    if paths:
        items.append(f"json_extract_string(attributes, [{', '.join(quote_literal(feature_path(n)) for n in paths)}]) "
                     "AS fw_json")
    where = f"{EDGE_INFERENCES} AND {condition}" if condition else EDGE_INFERENCES
    return f"(SELECT {', '.join(items) or 'NULL AS fw_none'} FROM span_rows WHERE {where})", exprs


def monitored_features(read, model: str, version: str, start: datetime, end: datetime) -> list[FeatureSpec]:
    """The features and predictions the edge inferences of [start, end) carry, sorted by name."""
    params = edge_params(read, model, version, start, end)
    # Two scans, each parsing a span's JSON once: its keys, then the types at every feature's path.
    names = [k for (k,) in run_read(read, f"""
        SELECT DISTINCT k FROM (SELECT unnest(json_keys(attributes)) AS k FROM span_rows
                                WHERE {EDGE_INFERENCES} AND attributes IS NOT NULL)
        WHERE starts_with(k, '{FEATURE_PREFIX}') AND NOT contains(k, '"') ORDER BY k""", params)]
    paths = ", ".join(quote_literal('$."' + k + '"') for k in names)
    rows = run_read(read, f"""
        SELECT i, count(*) FILTER (WHERE t IN ('BIGINT', 'UBIGINT', 'DOUBLE')) AS numbers, count(t) AS n
        FROM (SELECT unnest(range({len(names)})) AS i, unnest(json_type(attributes, [{paths}])) AS t FROM span_rows
              WHERE {EDGE_INFERENCES} AND attributes IS NOT NULL)
        GROUP BY i ORDER BY i""", params) if names else []
    features = [FeatureSpec(names[i][len(FEATURE_PREFIX):], "numeric" if 2 * numbers > n else "categorical",
                            feature_expr(names[i][len(FEATURE_PREFIX):])) for i, numbers, n in rows]
    present = run_read(read, f"SELECT {', '.join(f'count({p.sql})' for p in PREDICTIONS)} FROM span_rows "
                             f"WHERE {EDGE_INFERENCES}", params)[0]
    return features + [p for p, n in zip(PREDICTIONS, present) if n]


def window_reference(read, model: str, version: str, start: datetime, end: datetime, config: DriftConfig,
                     excluded_sites: Sequence[str] = ()) -> dict[str, Summary]:
    """Profile the edge inferences of [start, end) of one model version (pinned and trailing references),
    leaving out those of ``excluded_sites``."""
    features = monitored_features(read, model, version, start, end)
    source, exprs = edge_source([f.name for f in features], condition="(site IS NULL OR NOT list_contains("
                                "$fw_excluded_sites, site))" if excluded_sites else "")
    params = {**edge_params(read, model, version, start, end), "fw_excluded_sites": list(excluded_sites)}
    return profile_reference(read, source, [FeatureSpec(f.name, f.kind, exprs[f.name]) for f in features], config,
                             params=params if excluded_sites else edge_params(read, model, version, start, end))


def reference_table(model: str, version: str, summaries: dict[str, Summary], kind: str,
                    start: datetime | None, end: datetime | None, *, window_start: datetime | None = None,
                    source: str | None = None) -> pa.Table:
    """``drift_references`` rows for one model version's reference."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows = [{"window_start": window_start, "model_name": model, "model_version": version, "feature": name,
             "kind": s.kind, "reference_kind": kind, "reference_start": start, "reference_end": end,
             "source": source, "summary": s.to_json_text(), "created_at": now}
            for name, s in sorted(summaries.items())]
    return pa.Table.from_pylist(rows, schema=REFERENCE_SCHEMA)


def load_references(read) -> list[StoredReference]:
    """Every stored reference, per version the one in force last: computed ones by age, then the imported one."""
    rows = run_read(read, """
        SELECT model_name, model_version, reference_kind, reference_start, reference_end, window_start,
               list(summary ORDER BY feature) AS summaries
        FROM drift_references
        GROUP BY model_name, model_version, reference_kind, reference_start, reference_end, window_start
        ORDER BY model_name, model_version, reference_kind = 'imported', reference_end NULLS LAST""")
    return [StoredReference(model, version, kind, start, end, {s.name: s for s in map(Summary.from_json_text, texts)},
                            window_start)
            for model, version, kind, start, end, window_start, texts in rows]


def in_force(references: Sequence[StoredReference]) -> dict[tuple[str, str], StoredReference]:
    """The reference each model version is compared with (as ordered by :func:`load_references`: the last)."""
    return {(r.model, r.version): r for r in references}


def first_seen(read, versions: Sequence[tuple[str, str]] = ()) -> dict[tuple[str, str], datetime]:
    """When each model version's first edge inference happened (event time), for the given versions (all if none)."""
    rows = run_read(read, f"""
        SELECT model_name, model_version, min({EVENT_TIME})::TIMESTAMP AS first FROM span_rows
        WHERE name = 'inference' AND inference_mode = 'edge' AND model_name IS NOT NULL
          AND model_version IS NOT NULL
          AND (len($models) = 0 OR list_contains($models, model_name || chr(0) || model_version))
        GROUP BY ALL""", {"models": [f"{m}\0{v}" for m, v in versions]})
    return {(m, v): first for m, v, first in rows}


def import_reference(db_path: str, model: str, version: str, path: str, categorical: Sequence[str] = (),
                     config: DriftConfig | None = None) -> list[str]:
    """Profile a training file (Parquet / CSV, one column per feature) as the reference of ``model`` ``version``.

    Writes to the DuckDB file ``db_path``, which no server may hold open
    (:class:`~collector.store.files.DatabaseLockedError` says so); a server
    started on it afterwards uses the reference from its next drift tick. Replaces
    any earlier imported reference of that version; returns the features.
    Columns named ``prediction_label`` / ``prediction_score`` / ``prediction_value``
    are compared with the predictions, every other column with ``ml.feature.<column>``.
    """
    from collector.store.files import open_database

    config = (config or DriftConfig()).validate()
    if not model or not version:
        raise ValueError("--model and --version must not be empty")
    con = open_database(":memory:")
    try:
        source = file_source(path)
        columns = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        features = file_feature_specs(columns, columns, categorical)
        if not features:
            raise ValueError(f"{path}: no columns")
        summaries = profile_reference(con, source, features, config)
    finally:
        con.close()
    table = reference_table(model, version, summaries, "imported", None, None, source=path)
    target = open_database(db_path)
    try:
        from analytics.schema import ANALYTICS  # not at module level: the schema imports this module
        from collector.store.migrations import migrate
        from collector.store.versions import COLLECTOR

        migrate(target, [COLLECTOR, ANALYTICS])  # a file no job ran on yet gets the drift tables
        target.execute("BEGIN")
        target.execute("DELETE FROM drift_references WHERE model_name = ? AND model_version = ? "
                       "AND reference_kind = 'imported'", [model, version])
        target.register("reference_rows", table)
        target.execute("INSERT INTO drift_references BY NAME SELECT * FROM reference_rows")
        target.execute("COMMIT")
    finally:
        target.close()
    return sorted(summaries)


def trailing_window(day_start: datetime, days: int) -> tuple[datetime, datetime]:
    """The trailing reference in force during the day starting at ``day_start``: the ``days`` days before it."""
    return day_start - timedelta(days=days), day_start
