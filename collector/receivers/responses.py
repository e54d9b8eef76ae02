"""OTLP answers, encoded as the request was (protobuf or JSON).

The OTLP specification asks servers to answer in the request's content type:
an ``Export*ServiceResponse`` on success (with ``partial_success`` when some
items were rejected alone), a ``google.rpc.Status`` on failure::

    body = success_body("traces", rejected=2, message="...", json=False)
    body = status_body(StatusCode.INVALID_ARGUMENT, "bad protobuf", json=True)
"""

from __future__ import annotations

import json as jsonlib
from enum import IntEnum

from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse


class StatusCode(IntEnum):
    """google.rpc.Code values used in answers."""

    OK = 0
    INVALID_ARGUMENT = 3
    RESOURCE_EXHAUSTED = 8
    UNAUTHENTICATED = 16
    UNAVAILABLE = 14
    UNIMPLEMENTED = 12


#: per signal: the Export*ServiceResponse and its partial_success count field (proto name, JSON name)
_RESPONSES = {
    "traces": (ExportTraceServiceResponse, "rejected_spans", "rejectedSpans"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points", "rejectedDataPoints"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records", "rejectedLogRecords"),
}


def success_body(signal: str, rejected: int, message: str, *, json: bool) -> bytes:
    response_type, field, json_field = _RESPONSES[signal]
    if json:
        if not rejected and not message:
            return b"{}"
        return jsonlib.dumps({"partialSuccess": {json_field: str(rejected), "errorMessage": message}}).encode()
    response = response_type()
    if rejected or message:
        setattr(response.partial_success, field, rejected)
        response.partial_success.error_message = message
    return response.SerializeToString()


def retry_info(retry_after: float) -> RetryInfo:
    return RetryInfo(retry_delay=Duration(seconds=int(retry_after), nanos=int((retry_after % 1) * 1e9)))


def status_message(code: StatusCode, message: str, retry_after: float | None = None) -> Status:
    status = Status(code=int(code), message=message)
    if retry_after is not None:
        status.details.add().Pack(retry_info(retry_after))
    return status


def status_body(code: StatusCode, message: str, *, json: bool, retry_after: float | None = None) -> bytes:
    if json:
        return jsonlib.dumps({"code": int(code), "message": message}).encode()
    return status_message(code, message, retry_after).SerializeToString()
