"""The manifest is the answer key: every incident it lists shows in the data, for any seed, size and start.

Runs the project's own verification (sample_data/verify.py) on bulk runs of
several seeds, fleet sizes, durations, rates and start times (small ones, so
the whole file takes about a minute), and checks that what a run is too small
to show is left out of its manifest and named on the command line.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sample_data import cli
from sample_data.bulk import write_request_log
from sample_data.generator import HOUR, SimConfig
from sample_data.incidents import KINDS
from sample_data.verify import FleetData, IncidentCheckFailed, check_incident

# (seed, devices, hours, emitted inferences per device-hour, start): a spread of sizes and of
# start times (local time of day decides traffic and temperature), each 1-45k inferences
RUNS = [
    (100, 13, 12, 90, "2026-11-12T10:51:00Z"),
    (103, 43, 6, 90, "2026-11-11T04:55:00Z"),
    (106, 44, 12, 60, "2026-11-18T03:45:00Z"),
    (109, 29, 3, 90, "2026-11-05T17:40:00Z"),
    (21, 30, 12, 60, "2026-11-02T00:00:00Z"),
    (22, 20, 8, 120, "2026-11-09T21:30:00Z"),
    (23, 40, 12, 95, "2026-11-20T14:10:00Z"),
    (24, 20, 2, 16, "2026-11-02T00:00:00Z"),  # the docs' live-demo size: almost nothing shows
]


def _config(seed: int, devices: int, hours: float, rate: float, start: str) -> SimConfig:
    return SimConfig(seed=seed, devices=devices, duration_ns=int(hours * HOUR), inferences_per_hour=rate,
                     start_ns=cli.parse_start(start), stage_ratio=0.25, shadow_ratio=0.15, label_ratio=0.05,
                     export_interval_s=300, metric_interval_s=600)


@pytest.fixture(scope="module")
def verified_runs(tmp_path_factory):
    """Per run: its manifest and the verification's failures (incident id -> message)."""
    tmp = tmp_path_factory.mktemp("ground-truth")
    out = []
    for n, run in enumerate(RUNS):
        path = str(tmp / f"run{n}.otlp.zst")
        manifest = write_request_log(_config(*run), path, level=1, progress=False)
        data = FleetData.load(path)
        failures = {}
        for incident in manifest["incidents"]:
            try:
                check_incident(data, incident, manifest)
            except IncidentCheckFailed as exc:
                failures[incident["id"]] = str(exc)
        out.append((run, manifest, failures))
    return out


def test_every_listed_incident_shows_in_the_data(verified_runs):
    failed = {f"{run}": failures for run, _, failures in verified_runs if failures}
    assert not failed, f"manifests claim incidents the data does not show: {failed}"


def test_every_kind_is_either_listed_or_left_out_with_a_reason(verified_runs):
    listed = Counter()
    for run, manifest, _ in verified_runs:
        kinds = [i["kind"] for i in manifest["incidents"]]
        omitted = manifest.get("incidents_omitted", {})
        assert sorted(kinds + list(omitted)) == sorted(KINDS), run
        assert all(len(reason) > 20 for reason in omitted.values()), omitted
        listed.update(kinds)
    # not vacuous: every kind is shown (and verified) by several of these runs
    assert all(listed[kind] >= 2 for kind in KINDS), listed
    assert len(verified_runs[-1][1]["incidents"]) <= 2, "a 20-device 2-hour run cannot show the incidents"


def test_a_run_too_small_says_on_the_command_line_what_it_leaves_out(tmp_path, capsys):
    out = tmp_path / "demo.otlp.zst"
    assert cli.main(["--devices", "20", "--duration", "2h", "--out", str(out), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "demo.otlp.zst.manifest.json").read_text())
    err = capsys.readouterr().err.splitlines()
    omitted = manifest["incidents_omitted"]
    assert omitted, "20 devices for 2 hours at the sample's rate cannot show every incident"
    for kind, reason in omitted.items():
        lines = [line for line in err if f" {kind} " in line]
        assert len(lines) == 1 and reason in lines[0], (kind, err)
    assert not {i["kind"] for i in manifest["incidents"]} & set(omitted)
