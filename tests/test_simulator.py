"""The fleet simulator: determinism, live == bulk, the data contract, incident checks."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult

from collector.request_log import read_request_log
from sample_data import cli
from sample_data.bulk import encode_request, write_request_log
from sample_data.generator import HOUR, FleetSimulation, SimConfig
from sample_data.incidents import KINDS
from sample_data.live import LiveRunner
from sample_data.verify import FleetData, IncidentCheckFailed, check_incident

SMALL = SimConfig(seed=3, devices=12, duration_ns=6 * HOUR, inferences_per_hour=40,
                  export_interval_s=60, metric_interval_s=120, stage_ratio=0.5)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    ma = write_request_log(SMALL, str(a), progress=False)
    mb = write_request_log(SMALL, str(b), progress=False)
    write_request_log(dataclasses.replace(SMALL, seed=4), str(c), progress=False)
    assert a.read_bytes() == b.read_bytes()
    assert ma["incidents"] == mb["incidents"] and ma["data"]["sha256"] == mb["data"]["sha256"]
    assert a.read_bytes() != c.read_bytes()


def test_records_are_in_received_order_and_decode_as_otlp(tmp_path):
    path = tmp_path / "run.otlp.zst"
    manifest = write_request_log(SMALL, str(path), progress=False)
    last, n = 0, {"traces": 0, "metrics": 0}
    for rec in read_request_log(path):
        assert rec.received_at_unix_nano >= last
        last = rec.received_at_unix_nano
        n[rec.signal] += 1
    assert n == manifest["data"]["records"]
    assert n["traces"] > 100 and n["metrics"] > 100


class _Capture:
    """Stands in for an OTLP exporter: encodes what it is given, as the real one would."""

    def __init__(self, sink, signal, emitter):
        self.sink, self.signal, self.emitter = sink, signal, emitter

    def export(self, data, **kwargs):
        if self.signal == "traces":
            self.sink.append((self.emitter.key, "traces", encode_spans(data).SerializeToString()))
            return SpanExportResult.SUCCESS
        self.sink.append((self.emitter.key, "metrics", encode_metrics(data).SerializeToString()))
        return MetricExportResult.SUCCESS

    def shutdown(self):
        pass


def test_live_sdk_path_and_bulk_are_the_same_telemetry_bit_for_bit():
    """The real TracerProvider / MeterProvider path (live) and the direct encoder path (bulk)
    produce identical OTLP requests, emitter by emitter, in delivery order."""
    sim = FleetSimulation(SMALL)
    bulk, delayed = [], 0
    for r in sim.requests():
        bulk.append((r.deliver_ns, r.seq, r.emitter.key, r.signal, encode_request(r)))
        delayed += r.deliver_ns > r.created_ns
    bulk.sort()
    captured: list = []
    stats = LiveRunner(SMALL, speed=0, exporter_factory=lambda s, e: _Capture(captured, s, e)).run()
    assert stats["failed"] == {"traces": 0, "metrics": 0}

    def by_emitter(items):
        out = defaultdict(list)
        for key, signal, payload in items:
            out[(key, signal)].append(payload)
        return out

    expected = by_emitter((k, s, p) for _, _, k, s, p in bulk)
    got = by_emitter(captured)
    assert expected.keys() == got.keys()
    for key in expected:
        assert expected[key] == got[key], f"emitter {key} differs between live and bulk"
    # the run really exercises reboots (two resources for a device) and the offline backlog
    assert any(len(set(d.firmware)) == 2 for d in sim.devices)
    assert delayed > 10


def test_data_contract_attributes(tmp_path):
    path = tmp_path / "run.otlp.zst"
    write_request_log(SMALL, str(path), progress=False)
    resource_keys = {"service.name", "device.id", "fleet.site", "fleet.region", "device.class",
                     "device.firmware.version"}
    seen_names = set()
    edge = cloud = 0
    for rec in read_request_log(path):
        if rec.signal != "traces":
            continue
        req = ExportTraceServiceRequest.FromString(rec.payload)
        for rs in req.resource_spans:
            res = {kv.key for kv in rs.resource.attributes}
            is_device = "device.id" in res
            if is_device:
                assert resource_keys <= res
            for ss in rs.scope_spans:
                assert ss.scope.name == "fleetwatch.sample_data"
                for s in ss.spans:
                    seen_names.add(s.name)
                    attrs = {kv.key: kv.value for kv in s.attributes}
                    assert s.end_time_unix_nano >= s.start_time_unix_nano
                    if s.name == "inference":
                        for k in ("ml.model.name", "ml.model.version", "ml.inference.mode", "ml.request.id"):
                            assert k in attrs
                        mode = attrs["ml.inference.mode"].string_value
                        assert mode in ("edge", "cloud")
                        if mode == "edge":
                            edge += 1
                            assert is_device
                            assert any(k.startswith("ml.feature.") for k in attrs)
                            if s.status.code == 2:
                                assert "error.type" in attrs
                            else:
                                assert ("ml.prediction.label" in attrs) != ("ml.prediction.value" in attrs)
                        else:
                            cloud += 1
                            assert len(s.parent_span_id) == 8  # child of the edge span (remote parent)
                    elif s.name == "model.load":
                        assert attrs["ml.model.integrity"].string_value in ("ok", "failed")
                    elif s.name == "deployment":
                        for k in ("deployment.outcome", "deployment.rollout.id", "deployment.rollout.stage"):
                            assert k in attrs
                    elif s.name == "ground_truth":
                        assert "ml.request.id" in attrs and ("ml.label" in attrs or "ml.label.value" in attrs)
                    elif s.name in ("preprocess", "execute", "postprocess"):
                        assert len(s.parent_span_id) == 8
    assert {"inference", "preprocess", "execute", "postprocess", "model.load", "deployment"} <= seen_names
    assert edge > 1000 and cloud > 50


def test_manifest_lists_every_incident_kind_with_its_ground_truth(with_and_without_incidents):
    m = with_and_without_incidents[0]
    assert sorted(i["kind"] for i in m["incidents"]) == sorted(KINDS)
    assert m["incidents_omitted"] == {}
    for inc in m["incidents"]:
        for key in ("id", "kind", "cohort", "start", "end", "start_unix_nano", "end_unix_nano", "magnitude",
                    "detect", "devices"):
            assert key in inc, (inc["kind"], key)
        assert inc["start_unix_nano"] < inc["end_unix_nano"]
        assert inc["devices"], inc["kind"]
    json.dumps(m)  # JSON-ready


@pytest.fixture(scope="module")
def with_and_without_incidents(tmp_path_factory):
    """A one-day run of 70 devices (big enough to show all eight kinds), once with every
    incident and once with none."""
    tmp = tmp_path_factory.mktemp("incidents")
    base = SimConfig(seed=11, devices=70, duration_ns=24 * HOUR, inferences_per_hour=30, stage_ratio=0.25,
                     export_interval_s=300, metric_interval_s=600)
    m_all = write_request_log(base, str(tmp / "all.otlp.zst"), progress=False)
    write_request_log(dataclasses.replace(base, incidents=()), str(tmp / "none.otlp.zst"), progress=False)
    return m_all, FleetData.load(str(tmp / "all.otlp.zst")), FleetData.load(str(tmp / "none.otlp.zst"))


@pytest.mark.parametrize("kind", KINDS)
def test_incident_checks_find_the_incident_and_only_when_it_is_there(with_and_without_incidents, kind):
    manifest, data_all, data_none = with_and_without_incidents
    incident = next(i for i in manifest["incidents"] if i["kind"] == kind)
    check_incident(data_all, incident, manifest)
    with pytest.raises(IncidentCheckFailed):
        check_incident(data_none, incident, manifest)


def test_config_validation():
    with pytest.raises(ValueError):
        FleetSimulation(dataclasses.replace(SMALL, metric_interval_s=90))
    with pytest.raises(ValueError):
        FleetSimulation(dataclasses.replace(SMALL, devices=0))
    with pytest.raises(ValueError):
        FleetSimulation(dataclasses.replace(SMALL, shadow_ratio=1.5))
    with pytest.raises(ValueError):
        FleetSimulation(dataclasses.replace(SMALL, incidents=("meteor_strike",)))


def test_cli_parsing_and_errors(tmp_path, capsys):
    assert cli.parse_duration("48h") == 48 * HOUR
    assert cli.parse_duration("90m") == 90 * 60 * 10**9
    assert cli.parse_duration("2d") == 48 * HOUR
    assert cli.format_duration(48 * HOUR) == "48h"
    assert cli.parse_start("2026-11-02T00:00:00Z") == 1_793_577_600 * 10**9
    assert cli.parse_incidents("all") == KINDS
    assert cli.parse_incidents("none") == ()
    assert cli.parse_incidents("clock_skew,error_burst") == ("error_burst", "clock_skew")
    with pytest.raises(SystemExit):
        cli.main(["--devices", "3"])  # no output given
    with pytest.raises(SystemExit):
        cli.main(["--incidents", "nope", "--out", str(tmp_path / "x")])
    assert cli.main(["--list-incidents"]) == 0
    out = tmp_path / "tiny.otlp.zst"
    assert cli.main(["--devices", "4", "--duration", "30m", "--export-interval", "60", "--metric-interval", "60",
                     "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "tiny.otlp.zst.manifest.json").read_text())
    assert manifest["data"]["bytes"] == out.stat().st_size
    assert manifest["generator"]["command"].startswith("fleetwatch simulate --devices 4 --duration 30m")


def test_list_incidents_is_plain_text(capsys):
    assert cli.main(["--list-incidents"]) == 0
    out = capsys.readouterr().out
    assert "thermal_throttling" in out and "error_burst" in out
    assert "``" not in out and ":mod:" not in out and ":class:" not in out


def test_db_in_a_missing_directory_is_a_one_line_error_naming_that_path(tmp_path, capsys):
    db = tmp_path / "no-such-dir" / "fleet.duckdb"
    assert cli.main(["--devices", "2", "--duration", "10m", "--export-interval", "60", "--metric-interval", "60",
                     "--db", str(db), "--no-progress"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(db) in err[0] and ".fleetwatch-sim-" not in err[0], err
    assert not (tmp_path / "no-such-dir").exists()


def test_simulate_off_a_terminal_prints_progress_lines_and_a_summary_in_words(tmp_path, capsys):
    db = tmp_path / "fleet.duckdb"
    assert cli.main(["--devices", "3", "--duration", "40m", "--export-interval", "60", "--metric-interval", "60",
                     "--incidents", "none", "--db", str(db)]) == 0
    err = capsys.readouterr().err.splitlines()
    progress = [line for line in err if line.startswith("simulate: ") and "% (" in line]
    assert progress and progress[-1].startswith("simulate: 100% (40 of 40 ticks)"), err
    summary = err[-1]
    assert summary.startswith("fleetwatch simulate: loaded ") and " spans and " in summary, summary
    assert "{" not in summary and str(db) in summary
