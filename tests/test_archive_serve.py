"""The archive inside ``fleetwatch serve``: scheduled export and retention, reads through the read API, late rows."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from analytics.api.catalog import CATALOG
from analytics.api.client import ReadApiClient
from analytics.archive import layout
from bench.harness import CollectorProcess, metric_value, wait_until
from collector.store.files import open_database
from tests.analytics_data import ADMIN, READ
from tests.archive_checks import sample_copy, table_rows
from tests.sdk_devices import Device, emit_span

BOUNDARY = datetime(2026, 11, 3)  # the hot period is set so that it ends here: half the sample is pruned
RANGE = {"since": "2026-11-02T12:00:00Z", "until": "2026-11-03T12:00:00Z"}
PRUNED_HOUR, HOT_HOUR = datetime(2026, 11, 2, 10), datetime(2026, 11, 3, 10)


def named(con, name: str, **raw) -> list:
    """A named query's rows run on the file itself, as the read API ran them before any archive existed."""
    bound = CATALOG[name].bind(raw)
    return sorted(con.sql(bound.sql, params=bound.params).to_arrow_table().to_pylist(), key=repr)


def served(client: ReadApiClient, name: str, **raw) -> list:
    return sorted(client.query_arrow(name, **raw).to_pylist(), key=repr)


def test_serve_archives_prunes_and_reads_through_the_archive(sample_db, tmp_path):
    db, root = sample_copy(sample_db, tmp_path), tmp_path / "archive"
    con = open_database(str(db))
    try:
        device = con.execute("SELECT device_id FROM span_rows WHERE device_id IS NOT NULL GROUP BY ALL "
                             "ORDER BY count(*) DESC LIMIT 1").fetchall()[0][0]
        before = {"device_spans": named(con, "device_spans", device_id=device, **RANGE),
                  "device_metrics": named(con, "device_metrics", device_id=device, **RANGE)}
        old_trace = con.execute("SELECT trace_id FROM spans WHERE start_time < ? LIMIT 1", [BOUNDARY]).fetchall()[0][0]
        before["trace_spans"] = named(con, "trace_spans", trace_id=old_trace)
        old_rows = sum(con.execute(f"SELECT count(*) FROM {t} WHERE {c} < ?", [BOUNDARY]).fetchone()[0]
                       for t, c in layout.TIME_COLUMNS.items())
    finally:
        con.close()
    assert all(before.values()) and before["device_spans"][0]["start_time"] < BOUNDARY
    rows = table_rows(db)
    now_hour = datetime.now(timezone.utc).replace(tzinfo=None, minute=0, second=0, microsecond=0)
    hot_hours = int((now_hour - BOUNDARY) / timedelta(hours=1))
    config = {"api": {"read": {"bearer_tokens": [READ]}, "admin": {"bearer_tokens": [ADMIN]}},
              "archive": {"path": str(root), "hot_period": f"{hot_hours}h", "schedule": "1s"}}
    with CollectorProcess(db, config=config) as central:
        def archived(rows_exported: int) -> bool:
            text = central.metrics_text()
            return (metric_value(text, "fleetwatch_archive_rows_exported_total") == rows_exported
                    and metric_value(text, "fleetwatch_archive_rows_pruned_total") >= old_rows)
        wait_until(lambda: archived(sum(rows.values())), timeout=600, what="the sample archived and half pruned")
        client = ReadApiClient(central.api_url, token=READ)
        for name, expected in before.items():
            raw = {"trace_id": old_trace} if name == "trace_spans" else {"device_id": device, **RANGE}
            assert served(client, name, **raw) == expected, name

        # A device that was offline sends spans of an hour already pruned and of one archived but still hot.
        late = Device("late-cam", "jetson-orin", boot=PRUNED_HOUR - timedelta(hours=1))
        late.spans(central.http_url, lambda tracer: [
            emit_span(tracer, "inference", at, {"ml.model.name": "detector"})
            for at in (PRUNED_HOUR + timedelta(minutes=15),) * 3 + (HOT_HOUR + timedelta(minutes=15),) * 2])
        wait_until(lambda: archived(sum(rows.values()) + 5), timeout=300, what="the late spans archived")
        admin = ReadApiClient(central.api_url, token=ADMIN)
        counted = admin.sql("SELECT date_trunc('hour', start_time) AS hour, count(*) AS n FROM span_rows_all "
                            "WHERE device_id = 'late-cam' GROUP BY ALL ORDER BY hour").rows
        assert [row[1] for row in counted] == [3, 2]  # each once: from the archive, or from the file
        total = admin.sql("SELECT count(*) AS n FROM span_rows_all").rows[0][0]
        assert total == rows["span_rows"] + 5
        assert served(client, "device_spans", device_id=device, **RANGE) == before["device_spans"]
        for hour, n in ((PRUNED_HOUR, 3), (HOT_HOUR, 2)):
            manifest = layout.read_manifest(layout.partition_dir(root, "span_rows", hour))
            assert [p["file"] for p in manifest["parts"]] == [layout.part_name(0), layout.part_name(1)]
            assert manifest["parts"][1]["rows"] == n
    con = open_database(str(db), read_only=True)
    try:
        in_file = con.execute("SELECT count(*) FROM span_rows WHERE start_time < ?", [BOUNDARY]).fetchone()[0]
        assert in_file == 0  # the late rows of the pruned hour left the file with their part
    finally:
        con.close()
