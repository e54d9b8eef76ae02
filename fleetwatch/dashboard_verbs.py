"""``fleetwatch dashboards`` and what ``fleetwatch demo`` adds to serve (the dashboards, the jobs' progress).

Usage::

    fleetwatch dashboards --api http://127.0.0.1:4319 [--port 8501] [--host 127.0.0.1]
    FLEETWATCH_API_TOKEN=... fleetwatch dashboards --api https://fleetwatch.example.net:4319

The dashboards (Streamlit, dashboards/app.py) run as a child process and
read only through the read API at ``--api``; a token for it comes from
``FLEETWATCH_API_TOKEN``. Runs until SIGTERM or Ctrl-C, then stops the
child (exit 0); exit 1 if Streamlit does not come up or dies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone

STARTUP_SECONDS = 120.0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboards", help="serve the dashboards against a running server's read API",
                       description="Serve the dashboards (Streamlit) on localhost against the read API of a running "
                       "`fleetwatch serve` or `demo`; the API token, if it needs one, from FLEETWATCH_API_TOKEN. "
                       "Runs until SIGTERM or Ctrl-C.")
    p.add_argument("--api", required=True, metavar="URL", help="the read API, e.g. http://127.0.0.1:4319")
    p.add_argument("--port", type=int, default=8501, metavar="N", help="the dashboards' port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR", help="listen address (default 127.0.0.1)")


def run(args: argparse.Namespace) -> int:
    from collector.interrupt import StopSignals
    from dashboards.launcher import DashboardsConfig, DashboardsServer

    try:
        server = DashboardsServer(DashboardsConfig(api_url=args.api.rstrip("/"), port=args.port, host=args.host))
    except ValueError as exc:
        print(f"fleetwatch: {exc}", file=sys.stderr)
        return 2
    with StopSignals() as stop:
        server.start()
        try:
            if not server.wait_ready(STARTUP_SECONDS):
                if stop.requested:
                    return 0
                print(f"fleetwatch: the dashboards did not start (streamlit exit code {server.exit_code()})",
                      file=sys.stderr)
                return 1
            print(f"dashboards: {server.url}  (reading {args.api}; Ctrl-C stops)", file=sys.stderr, flush=True)
            while not stop.requested:
                if server.exit_code() is not None:
                    print(f"fleetwatch: streamlit exited with code {server.exit_code()}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        finally:
            server.stop()
    return 0


def demo_extensions(extensions: list, dashboards_port: int, started: float) -> list:
    """The demo's additions to ``extensions`` (serve's): the dashboards child and the jobs' progress.

    The progress needs where the sample starts once shifted: :func:`sample_moved_by` tells it, after
    the ports are checked (the shift is kept in the file, which must not be created before).
    """
    from analytics.service import AnalyticsExtension, ReadApiExtension
    from fleetwatch.demo_extensions import DashboardsExtension, JobProgress

    added: list = []
    api = next((e for e in extensions if isinstance(e, ReadApiExtension)), None)
    dashboards = None
    if api is not None:
        dashboards = DashboardsExtension(api, port=dashboards_port, out=sys.stderr)
        added.append(dashboards)
    jobs = next((e for e in extensions if isinstance(e, AnalyticsExtension)), None)
    if jobs is not None:
        added.append(JobProgress(jobs, since=sample_start(), out=sys.stderr, started=started, dashboards=dashboards))
    return added


def sample_moved_by(added: list, shift: timedelta) -> None:
    """Tell the demo's progress that the sample starts ``shift`` later than its manifest says."""
    from fleetwatch.demo_extensions import JobProgress

    for extension in added:
        if isinstance(extension, JobProgress):
            extension.since = _naive_utc(sample_start() + shift)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None)


def sample_start() -> datetime:
    """Where the shipped sample begins (its manifest), before any shift."""
    from fleetwatch.demo_sample import shipped

    manifest = json.loads(open(shipped("manifest.json")).read())
    return datetime.fromtimestamp(manifest["config"]["start_unix_nano"] / 1e9, timezone.utc)
