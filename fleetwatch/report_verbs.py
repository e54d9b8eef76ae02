"""``fleetwatch report drift``: one model's drift report as a self-contained HTML file and its JSON twin.

::

    fleetwatch report drift --model defect-detector --cohort site=atl-factory-2 --out drift.html
    fleetwatch report drift --model defect-detector --version 2.4.0 --window 1h --out drift.html --json drift.json
    fleetwatch report drift --db archive.duckdb --model defect-detector \\
        --window 2026-11-02T00:00:00Z..2026-11-04T00:00:00Z --out drift.html

Through the read API of a running server (``--api``, default the local one,
token in ``FLEETWATCH_API_TOKEN``) or on a DuckDB file no server holds
(``--db``, opened read-only); both give the same report. Prints the verdict
on stdout; errors are one line on stderr (exit 1; 2 for usage).
docs/drift.md ("The drift report") describes the sections.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO


def add_parsers(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="reports: the drift report of a model",
                            description="Reports written as files (docs/drift.md).")
    verbs = report.add_subparsers(dest="report_verb", required=True)
    drift = verbs.add_parser(
        "drift", help="one model's drift report (HTML and JSON)",
        description="The verdict (retrain / investigate / no action / insufficient data) with its reasons, "
                    "features by severity, reference vs current distributions, drift over time, the cohorts "
                    "where drift concentrates, shadow agreement and ground-truth accuracy, as one HTML file "
                    "that works offline, and its JSON twin.")
    drift.add_argument("--model", required=True, help="ml.model.name")
    drift.add_argument("--version", help="ml.model.version (default: the newest with drift results)")
    drift.add_argument("--cohort", action="append", default=[], metavar="KEY=VALUE",
                       help="one cohort: site, region, device_class or firmware_version (default: the whole version)")
    drift.add_argument("--window", default="1d", metavar="1h|1d|START..END",
                       help="hourly or daily results looking back from the newest (default 1d), or a range of "
                            "RFC 3339 times (hourly up to 2 days, daily beyond)")
    drift.add_argument("--out", required=True, metavar="HTML", help="write the HTML report here")
    drift.add_argument("--json", dest="json_out", metavar="JSON", help="the JSON twin (default: --out with .json)")
    source = drift.add_mutually_exclusive_group()
    source.add_argument("--api", metavar="URL", default=os.environ.get("FLEETWATCH_API_URL"),
                        help="a running server's read API (default http://127.0.0.1:4319; env FLEETWATCH_API_URL)")
    source.add_argument("--db", metavar="FILE", help="a DuckDB file no server holds (opened read-only)")
    drift.add_argument("--timeout", type=float, default=120.0, metavar="S", help="seconds to wait for the API")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from analytics.drift.report import render_drift_report

    json_out = args.json_out or os.path.splitext(args.out)[0] + ".json"
    try:
        payload = _payload(args)
        html = render_drift_report(payload)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(html)
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=1, allow_nan=False)
            f.write("\n")
    except _failures() as exc:  # the sources' own failures: one line, never a traceback
        print(f"fleetwatch report drift: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 1
    verdict = payload["verdict"]
    cohort = ", ".join(f"{k}={v}" for k, v in payload["cohort"].items()) or "whole version"
    out.write(f"{verdict['recommendation']}: drifted features: {', '.join(verdict['drifted']) or 'none'} "
              f"({payload['model']} {payload['model_version']}, {cohort}, {payload['window']} window from "
              f"{payload['current_window']['window_start']})\n")
    out.write(f"wrote {args.out} and {json_out}\n")
    return 0


def _payload(args: argparse.Namespace) -> dict:
    """The report's payload from the file (read-only) or from the server's read API."""
    from analytics.drift.report import DriftReportRequest, build_drift_report

    request = DriftReportRequest.parse(args.model, args.version, args.cohort, args.window)
    if args.db:
        from analytics.api.runner import open_file_runner

        with open_file_runner(args.db) as runner:
            return build_drift_report(runner, request)
    from analytics.api.client import DEFAULT_URL, ReadApiClient

    client = ReadApiClient(args.api or DEFAULT_URL, token=os.environ.get("FLEETWATCH_API_TOKEN") or None,
                           timeout=args.timeout)
    params = request.query_params()
    return json.loads(client.drift_report(params.pop("model"), format="json", **params))


def _failures() -> tuple[type[BaseException], ...]:
    """What the sources raise with a message meant for the user (a bug's exception is not among them)."""
    from analytics.api.client import ApiError
    from analytics.api.runner import QueryUnavailable, TruncatedAnswer
    from collector.store.files import DatabaseLockedError
    from collector.store.read_pool import PoolBusy, QueryTimeout

    # ValueError covers ReportError, BadParameter, NotADatabaseError and QueryFailed.
    return (ApiError, QueryUnavailable, TruncatedAnswer, DatabaseLockedError, PoolBusy, QueryTimeout, OSError,
            ValueError)
