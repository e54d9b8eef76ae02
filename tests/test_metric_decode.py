"""decode_metrics: every kind of point to its row, and every rejection reason with where it happened."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from bench.otlp_shapes import kv
from collector.decoding.arrow_batches import TableBuilder
from collector.decoding.metric_decode import SHARED, decode_metrics
from collector.store.schema import HISTOGRAM_POINT_COLUMNS, METRIC_POINT_COLUMNS


def _request() -> tuple[ExportMetricsServiceRequest, object]:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", "dev-9"), kv("host.name", "h")])
    scope = rm.scope_metrics.add()
    scope.scope.name = "edge.runtime"
    scope.scope.attributes.extend([kv("lib", "x")])
    return request, scope


def rows_of(table: dict) -> list[dict]:
    """One dict per row, the resource and scope columns expanded from their runs."""
    runs = table["shared_runs"]
    columns = {name: [v for v, k in zip(values, runs) for _ in range(k)] if name in SHARED else values
               for name, values in table.items() if name != "shared_runs"}
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def test_each_point_kind_becomes_one_row_with_shared_and_own_columns():
    request, scope = _request()
    gauge = scope.metrics.add(name="device.cpu.utilization", unit="1")
    gauge.gauge.data_points.add(time_unix_nano=10, as_double=0.25).attributes.extend([kv("core", 1)])
    total = scope.metrics.add(name="ml.inference.count", description="inferences")
    total.sum.aggregation_temporality = 2
    total.sum.is_monotonic = True
    total.sum.data_points.add(time_unix_nano=20, start_time_unix_nano=5, as_int=7)
    hist = scope.metrics.add(name="ml.inference.duration", unit="ms")
    hist.histogram.aggregation_temporality = 1
    hist.histogram.data_points.add(time_unix_nano=30, count=3, sum=55.0, explicit_bounds=[5.0, 10.0],
                                   bucket_counts=[1, 1, 1])
    expo = scope.metrics.add(name="ml.score")
    point = expo.exponential_histogram.data_points.add(time_unix_nano=40, count=2, scale=3, zero_count=1)
    point.positive.offset = -2
    point.positive.bucket_counts.extend([1])

    decoded = decode_metrics(request.SerializeToString())

    assert decoded["count"] == 4 and decoded["rejected"] == 0 and decoded["first_error"] is None
    numbers, histograms = decoded["metric_points"], decoded["histogram_points"]
    receipt = ("received_at", "gateway_id")
    assert list(numbers) == [c.name for c in METRIC_POINT_COLUMNS if c.name not in receipt] + ["shared_runs"]
    assert list(histograms) == [c.name for c in HISTOGRAM_POINT_COLUMNS if c.name not in receipt] + ["shared_runs"]
    assert numbers["shared_runs"] == [2] and histograms["shared_runs"] == [2]
    rows = rows_of(numbers)
    assert rows[0] == {
        "metric_type": "gauge", "is_monotonic": None, "value": 0.25, "int_value": None,
        "metric_name": "device.cpu.utilization", "description": None, "unit": "1", "time": 10, "start_time": None,
        "aggregation_temporality": None, "flags": 0, "service_name": "svc", "device_id": "dev-9", "site": None,
        "region": None, "device_class": None, "firmware_version": None, "attributes": '{"core":1}',
        "exemplars": None, "resource_attributes": '{"host.name":"h"}', "scope_name": "edge.runtime",
        "scope_version": None, "scope_attributes": '{"lib":"x"}',
    }
    assert (rows[1]["metric_type"], rows[1]["is_monotonic"], rows[1]["value"], rows[1]["int_value"],
            rows[1]["aggregation_temporality"], rows[1]["start_time"]) == ("sum", True, 7.0, 7, "cumulative", 5)
    explicit, exponential = rows_of(histograms)
    assert (explicit["histogram_type"], explicit["count"], explicit["sum"], explicit["min"], explicit["explicit_bounds"],
            explicit["bucket_counts"], explicit["scale"], explicit["aggregation_temporality"]) == (
        "explicit", 3, 55.0, None, [5.0, 10.0], [1, 1, 1], None, "delta")
    assert (exponential["histogram_type"], exponential["sum"], exponential["scale"], exponential["zero_count"],
            exponential["positive_offset"], exponential["positive_bucket_counts"], exponential["negative_bucket_counts"],
            exponential["explicit_bounds"]) == ("exponential", None, 3, 1, -2, [1], [], None)


@pytest.mark.parametrize("build, reason, where", [
    (lambda s: s.metrics.add(name="g").gauge.data_points.add(as_double=1.0),
     "missing_timestamp", "resource_metrics[0].scope_metrics[0].metrics[1].gauge.data_points[0]: time_unix_nano is 0"),
    (lambda s: s.metrics.add(name="g").gauge.data_points.add(time_unix_nano=1),
     "missing_value", "metrics[1].gauge.data_points[0]: data point has neither as_double nor as_int"),
    (lambda s: s.metrics.add(name="h").histogram.data_points.add(time_unix_nano=1, explicit_bounds=[2.0, 1.0],
                                                                 bucket_counts=[0, 0, 0]),
     "invalid_buckets", "metrics[1].histogram.data_points[0]: bucket_counts must have"),
    (lambda s: s.metrics.add(name="s").summary.data_points.add(time_unix_nano=1),
     "unsupported_summary", "resource_metrics[0].scope_metrics[0].metrics[1]: summary metrics are not stored"),
    (lambda s: s.metrics.add(name="").gauge.data_points.add(time_unix_nano=1, as_double=1.0),
     "missing_metric_name", "metrics[1]: metric has no name"),
])  # fmt: skip
def test_a_bad_point_is_rejected_alone_with_its_reason_and_place(build, reason, where):
    request, scope = _request()
    scope.metrics.add(name="ok").gauge.data_points.add(time_unix_nano=5, as_double=2.0)
    build(scope)
    decoded = decode_metrics(request.SerializeToString())
    assert decoded["count"] == 1 and decoded["metric_points"]["value"] == [2.0]
    assert decoded["rejected"] == 1 and decoded["reject_reasons"] == {reason: 1}
    assert where in decoded["first_error"]


def test_an_undecodable_body_is_a_value_error():
    with pytest.raises(ValueError, match="not a valid OTLP ExportMetricsServiceRequest"):
        decode_metrics(b"\xff\xff\xff")


def test_a_resource_is_held_once_per_run_of_points():
    big = "s" * 100_000
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend([kv("service.name", big)])
    for scope_name in ("a", "b"):
        scope = rm.scope_metrics.add()
        scope.scope.name = scope_name
        for i in range(50):
            scope.metrics.add(name="g").gauge.data_points.add(time_unix_nano=1 + i, as_double=i)
    scope.metrics.add(name="h").histogram.data_points.add(time_unix_nano=1, count=1, explicit_bounds=[1.0],
                                                          bucket_counts=[1, 0])
    numbers, histograms = (decode_metrics(request.SerializeToString())[t] for t in ("metric_points", "histogram_points"))
    assert numbers["service_name"] == [big, big] and numbers["scope_name"] == ["a", "b"]
    assert numbers["shared_runs"] == [50, 50] and len(numbers["value"]) == 100
    assert histograms["service_name"] == [big] and histograms["shared_runs"] == [1]

    builder = TableBuilder("metric_points")  # two requests in one batch: dictionaries over their runs
    for received in (1, 2):
        builder.add(numbers, 100, received, "gw")
    service = builder.build()["service_name"].combine_chunks()
    assert service.type == pa.dictionary(pa.int32(), pa.string()) and service.dictionary.to_pylist() == [big] * 4
    assert service.indices.to_pylist() == [0] * 50 + [1] * 50 + [2] * 50 + [3] * 50
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.register("got", pa.table({"service_name": service}))
    assert con.execute("SELECT count(*), min(service_name) = max(service_name) FROM got").fetchall() == [(200, True)]
