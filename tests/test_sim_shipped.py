"""The shipped sample: small enough, matching its manifest and its regeneration command."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

import pytest

from sample_data import cli
from sample_data.verify import FleetData, check_incident

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DATA = SAMPLE / "fleet-sample.otlp.zst"
MANIFEST = SAMPLE / "manifest.json"
REGENERATE = SAMPLE / "REGENERATE"
MAX_BYTES = 25 * 1024 * 1024


def _manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def _regeneration_args() -> list[str]:
    lines = [ln for ln in REGENERATE.read_text().splitlines() if ln.startswith("fleetwatch simulate ")]
    assert len(lines) == 1, "REGENERATE must hold exactly one fleetwatch simulate command"
    return shlex.split(lines[0])[2:]


def test_sample_is_small_and_matches_its_manifest():
    m = _manifest()
    size = DATA.stat().st_size
    assert size <= MAX_BYTES
    assert m["data"]["bytes"] == size
    assert m["data"]["sha256"] == hashlib.sha256(DATA.read_bytes()).hexdigest()
    assert m["data"]["file"] == DATA.name
    kinds = {i["kind"] for i in m["incidents"]}
    assert kinds == set(cli.KINDS), "the sample must show every incident kind"
    assert m["config"]["devices"] >= 200 and m["config"]["duration_hours"] >= 48
    assert m["sampling"]["mean_inferences_per_device_hour"] > 10


def test_regenerate_file_and_manifest_agree():
    args = _regeneration_args()
    m = _manifest()
    out = args[args.index("--out") + 1]
    manifest = args[args.index("--manifest") + 1]
    assert Path(out).name == DATA.name and Path(manifest).name == MANIFEST.name
    options = [a for i, a in enumerate(args) if a not in ("--out", "--manifest")
               and (i == 0 or args[i - 1] not in ("--out", "--manifest"))]
    assert options == m["generator"]["options"]


def _same_requests(regenerated: Path, shipped: Path) -> None:
    """Record by record: signal, receive time and the parsed OTLP message (not its serialized bytes)."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from collector.request_log import read_request_log

    message = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest}
    count = 0
    for count, (new, old) in enumerate(zip(read_request_log(regenerated), read_request_log(shipped),
                                          strict=True), start=1):
        assert (new.signal, new.received_at_unix_nano) == (old.signal, old.received_at_unix_nano), count
        if new.payload != old.payload:
            assert message[new.signal].FromString(new.payload) == message[old.signal].FromString(old.payload), count
    assert count == sum(_manifest()["data"]["records"].values())


def test_regeneration_command_reproduces_the_sample(tmp_path):
    """Runs the exact command (about 30-40 s for the full two-day, 200-device set).

    With the library versions recorded in the manifest the file must come out
    byte for byte. A newer release of one of them (zstd's compressor, the
    SDK's or protobuf's encoder) may change the bytes without changing the
    telemetry, so then the requests are compared as parsed OTLP messages.
    """
    args = _regeneration_args()
    args[args.index("--out") + 1] = str(tmp_path / DATA.name)
    args[args.index("--manifest") + 1] = str(tmp_path / MANIFEST.name)
    assert cli.main(args + ["--no-progress"]) == 0
    regenerated = json.loads((tmp_path / MANIFEST.name).read_text())
    if _manifest()["generator"]["versions"] == cli.library_versions():
        assert (tmp_path / DATA.name).read_bytes() == DATA.read_bytes(), (
            "the shipped sample differs from what its regeneration command produces")
        assert (tmp_path / MANIFEST.name).read_text() == MANIFEST.read_text()
        return
    _same_requests(tmp_path / DATA.name, DATA)
    shipped = _manifest()
    for manifest in (regenerated, shipped):
        for key in ("sha256", "bytes", "uncompressed_payload_bytes"):  # the encoding's, not the telemetry's
            del manifest["data"][key]
        del manifest["generator"]["versions"]
    assert regenerated == shipped


@pytest.fixture(scope="module")
def sample_data():
    return FleetData.load(str(DATA))


@pytest.mark.parametrize("incident", _manifest()["incidents"], ids=lambda i: i["id"])
def test_each_incident_of_the_manifest_is_in_the_shipped_data(sample_data, incident):
    check_incident(sample_data, incident, _manifest())


def test_shipped_data_general_shape(sample_data):
    d = sample_data
    m = _manifest()
    assert d.n == m["counts"]["inferences_edge"]
    # shadow requests join edge requests; most cloud answers agree
    edge_ids = set(d.request_id.tolist())
    assert set(d.cloud_label) <= edge_ids
    assert len(d.cloud_label) == m["counts"]["spans"]["inference.cloud"]
    # every device and every site reports
    assert len(set(d.device.tolist())) == m["config"]["devices"]
    assert {s["site"] for s in m["fleet"]["sites"]} == set(d.site.tolist())
    # the error rate outside incidents is the low baseline
    assert 0.001 < d.error.mean() < 0.02


def test_simulator_doc_timings_say_they_are_quiet_machine_figures():
    """A timing measured on a quiet machine must say so: on a busy one the same load takes minutes."""
    text = (SAMPLE.parent / "docs" / "simulator.md").read_text()
    timings = list(re.finditer(r"about \d+ s\b", text))
    assert timings
    for m in timings:
        assert "quiet" in text[m.end():m.end() + 40], text[m.start():m.end() + 40]
