"""Docs that tests keep honest: every SQL example in docs/schema.md runs, the sample config loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.otlp_shapes import realistic_trace_request
from collector.config import config_from_dict
from bench.harness import CollectorProcess, query
from tests.otlp_requests import gauge_request, histogram_request, log_request
from bench.harness import post

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def populated_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("docs") / "fw.duckdb"
    with CollectorProcess(db) as collector:
        for seed in range(3):
            traces = realistic_trace_request(64, seed=seed, device=seed)
            assert post(collector.http_port, "/v1/traces", traces, token=None)[0] == 200
            span = ExportTraceServiceRequest.FromString(traces).resource_spans[0].scope_spans[0].spans[0]
            logs, _ = log_request(2, in_span=(span.trace_id, span.span_id))
            assert post(collector.http_port, "/v1/logs", logs, token=None)[0] == 200
        for body in (gauge_request(3, name="device.temperature"), histogram_request()):
            assert post(collector.http_port, "/v1/metrics", body, token=None)[0] == 200
    return db


@pytest.mark.parametrize("index", range(len(_blocks(DOCS / "schema.md", "sql"))))
def test_schema_doc_queries_run(populated_db, index):
    sql = _blocks(DOCS / "schema.md", "sql")[index]
    rows = query(populated_db, sql)
    assert rows, f"example query {index} returned nothing:\n{sql}"


@pytest.mark.parametrize("view", ["spans", "log_records"])
def test_schema_doc_lists_every_view_column(populated_db, view):
    text = (DOCS / "schema.md").read_text()
    columns = [row[0] for row in query(populated_db, "SELECT column_name FROM information_schema.columns "
                                                     "WHERE table_name = ?", [view])]
    assert columns
    undocumented = [c for c in columns if f"`{c}`" not in text and not c.startswith("dropped_")]
    assert not undocumented


def test_configuration_doc_example_is_valid():
    # The sections of the layers above the collector register themselves on import.
    import analytics.api.config  # noqa: F401
    import analytics.archive.config  # noqa: F401
    import analytics.config  # noqa: F401
    import analytics.drift.section  # noqa: F401
    import analytics.health.config  # noqa: F401
    import analytics.shadow.config  # noqa: F401
    import analytics.slo.alerting_config  # noqa: F401

    blocks = _blocks(DOCS / "configuration.md", "yaml")
    assert blocks
    for block in blocks:
        config = config_from_dict(yaml.safe_load(block))
        config.validate()
