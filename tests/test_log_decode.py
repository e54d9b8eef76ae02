"""decode_logs: every body kind and id form to its row, every rejection reason, and the request-wide errors."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from bench.otlp_shapes import kv
from collector.decoding.attributes import MAX_VALUE_DEPTH
from collector.decoding.log_decode import decode_logs
from collector.receivers.otlp_json import json_to_protobuf
from collector.store.schema import LOG_ROW_COLUMNS


def _request() -> tuple[ExportLogsServiceRequest, object]:
    request = ExportLogsServiceRequest()
    rl = request.resource_logs.add()
    rl.resource.attributes.extend([kv("service.name", "svc"), kv("device.id", "dev-9"), kv("host.name", "h")])
    scope = rl.scope_logs.add()
    scope.scope.name, scope.scope.version = "edge.runtime", "1.2"
    scope.scope.attributes.extend([kv("lib", "x")])
    return request, scope


def _rows(decoded: dict) -> list[dict]:
    columns = decoded["log_rows"]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]


def test_bodies_of_every_kind():
    request, scope = _request()
    nested = AnyValue()
    nested.kvlist_value.values.extend([kv("k", 1)])
    nested.kvlist_value.values.add(key="arr").value.array_value.values.extend([AnyValue(double_value=float("nan")),
                                                                              AnyValue(bool_value=True)])
    bodies = [AnyValue(string_value='plain "text" ✓'), AnyValue(int_value=-3), AnyValue(double_value=1.5),
              AnyValue(bool_value=False), AnyValue(bytes_value=b"\x00\xff"), nested, None]
    for i, body in enumerate(bodies):
        record = scope.log_records.add(time_unix_nano=100 + i)
        if body is not None:
            record.body.CopyFrom(body)
    rows = _rows(decode_logs(request.SerializeToString()))
    assert [row["body"] for row in rows] == ['plain "text" ✓', "-3", "1.5", "false", '"AP8="',
                                             '{"k":1,"arr":["NaN",true]}', None]
    row = rows[0]
    assert (row["service_name"], row["device_id"], row["resource_attributes"]) == ("svc", "dev-9", '{"host.name":"h"}')
    assert (row["scope_name"], row["scope_version"], row["scope_attributes"]) == ("edge.runtime", "1.2", '{"lib":"x"}')
    assert set(rows[0]) == {c.name for c in LOG_ROW_COLUMNS} - {"received_at", "gateway_id"}


def test_ids_times_severity_and_the_rest():
    request, scope = _request()
    trace_id, span_id = bytes(range(1, 17)), bytes(range(1, 9))
    scope.log_records.add(time_unix_nano=5, observed_time_unix_nano=6, severity_number=17, severity_text="ERROR",
                          trace_id=trace_id, span_id=span_id, flags=1, event_name="model.load",
                          dropped_attributes_count=2).attributes.extend([kv("ml.model.name", "m"), kv("n", 2)])
    scope.log_records.add(observed_time_unix_nano=7, trace_id=bytes(16), span_id=bytes(8))  # all zero: no trace
    rows = _rows(decode_logs(request.SerializeToString()))
    first, second = rows
    assert (first["trace_id_hi"], first["trace_id_lo"], first["span_id"]) == (
        int.from_bytes(trace_id[:8], "big"), int.from_bytes(trace_id[8:], "big"), int.from_bytes(span_id, "big"))
    assert (first["time"], first["observed_time"], first["severity_number"], first["severity_text"]) == (
        5, 6, 17, "ERROR")
    assert (first["flags"], first["event_name"], first["dropped_attributes_count"]) == (1, "model.load", 2)
    assert first["attributes"] == '{"ml.model.name":"m","n":2}'
    assert (second["time"], second["observed_time"], second["severity_number"], second["severity_text"]) == (
        None, 7, None, None)
    assert (second["trace_id_hi"], second["trace_id_lo"], second["span_id"], second["attributes"]) == (
        None, None, None, None)


def test_bad_records_are_rejected_alone_with_where_and_why():
    request, scope = _request()
    scope.log_records.add(time_unix_nano=1, trace_id=b"\x01" * 15)
    scope.log_records.add(time_unix_nano=1, trace_id=b"\x01" * 16, span_id=b"\x01" * 9)
    scope.log_records.add(body=AnyValue(string_value="no time"))
    scope.log_records.add(time_unix_nano=1, observed_time_unix_nano=2**63)  # past what TIMESTAMP_NS holds
    scope.log_records.add(time_unix_nano=1, body=AnyValue(string_value="kept"))
    decoded = decode_logs(request.SerializeToString())
    assert (decoded["count"], decoded["rejected"]) == (1, 4)
    assert decoded["reject_reasons"] == {"invalid_trace_id": 1, "invalid_span_id": 1, "missing_timestamp": 1,
                                         "invalid_timestamp": 1}
    assert decoded["first_error"] == ("log record 0 in resource_logs[0].scope_logs[0]: "
                                      "trace_id must be empty or 16 bytes, got 15")
    assert decoded["log_rows"]["body"] == ["kept"]


def test_request_wide_errors():
    with pytest.raises(ValueError, match="not a valid OTLP ExportLogsServiceRequest"):
        decode_logs(b"\xff\xff\xff")
    request, scope = _request()
    body = AnyValue(string_value="deep")
    for _ in range(MAX_VALUE_DEPTH + 1):
        outer = AnyValue()
        outer.array_value.values.append(body)
        body = outer
    scope.log_records.add(trace_id=b"bad", body=body)  # rejected for its id, but its body still fails the request
    with pytest.raises(ValueError, match="nested more than"):
        decode_logs(request.SerializeToString())


def test_json_request_decodes_like_protobuf():
    request, scope = _request()
    scope.log_records.add(time_unix_nano=9, severity_number=9, trace_id=bytes(range(16)), span_id=bytes(range(8)),
                          body=AnyValue(string_value="hi"))
    body = ('{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}},'
            '{"key":"device.id","value":{"stringValue":"dev-9"}},{"key":"host.name","value":{"stringValue":"h"}}]},'
            '"scopeLogs":[{"scope":{"name":"edge.runtime","version":"1.2","attributes":[{"key":"lib","value":'
            '{"stringValue":"x"}}]},"logRecords":[{"timeUnixNano":"9","severityNumber":"SEVERITY_NUMBER_INFO",'
            '"traceId":"000102030405060708090a0b0c0d0e0f","spanId":"0001020304050607","body":{"stringValue":"hi"},'
            '"unknownField":1}]}]}]}')
    assert decode_logs(json_to_protobuf(body.encode(), "logs")) == decode_logs(request.SerializeToString())
    with pytest.raises(ValueError, match=r"logRecords\[0\]\.traceId"):
        json_to_protobuf(body.replace('"000102', '"zz0102').encode(), "logs")
