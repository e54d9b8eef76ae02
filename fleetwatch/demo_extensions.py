"""What ``fleetwatch demo`` adds to ``serve``: the dashboards child and the jobs' progress on stderr.

Both are :class:`collector.server.Extension` objects, started after the read
API and the jobs and stopped before them (the collector stops extensions in
reverse order), so Ctrl-C ends Streamlit first, then the jobs, then closes
the file::

    api = ReadApiExtension(...); jobs = AnalyticsExtension(...)
    dashboards = DashboardsExtension(api, port=8501, out=sys.stderr)
    progress = JobProgress(jobs, since=sample_start, out=sys.stderr, ready=[dashboards])
    run(config, metrics, [api, jobs, dashboards, progress])

Progress reads the scheduler's own watermarks (no query): for each family
of jobs, how far its newest computed window has come from ``since`` to the
newest window due now. A line is printed when a figure moves, e.g.
``jobs: rollups 100%, health 100%, shadow 100%, drift 40%, SLOs 65%``,
and once everything has caught up, one ``demo ready`` line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TextIO

from collector.config import parse_endpoint

log = logging.getLogger("fleetwatch.demo")

# Job names to the words a person watching the demo knows them by; others keep their name.
FAMILIES = {
    "rollup_minute": "rollups", "rollup_hour": "rollups", "device_hour": "rollups",
    "device_health_hour": "health",
    "shadow_hour": "shadow", "ground_truth_hour": "shadow",
    "drift_hour": "drift",
    "slo_sli_minute": "SLOs", "slo_freshness_minute": "SLOs", "slo_evaluate": "SLOs",
}
POLL_SECONDS = 2.0


class DashboardsExtension:
    """Streamlit as a child process against this process's read API; prints its URL once it answers."""

    migrations: Sequence = ()

    def __init__(self, api, *, port: int = 8501, host: str = "127.0.0.1", out: TextIO) -> None:
        self.api = api  # the ReadApiExtension: its port is known once it has started
        self.port = port
        self.host = host
        self.out = out
        self.server = None
        self.url: str | None = None
        self._watch: asyncio.Task | None = None

    def ports(self) -> list[tuple[str, str, int]]:
        return [("the dashboards", self.host, self.port)]

    async def start(self, collector) -> None:
        from dashboards.launcher import DashboardsConfig, DashboardsServer

        if self.api.api is None:
            print("fleetwatch: the read API did not start, so the dashboards are not started", file=self.out,
                  flush=True)
            return
        api_host, _ = parse_endpoint(self.api.config.endpoint, "api.endpoint")[:2]
        tokens = self.api.config.read_tokens
        try:
            self.server = DashboardsServer(DashboardsConfig(
                api_url=f"http://{_reachable(api_host)}:{self.api.api.port}", port=self.port, host=self.host,
                api_token=tokens[0] if tokens else None))
        except ValueError as exc:  # e.g. installed without the dashboards: the rest of the demo still runs
            print(f"fleetwatch: {exc}; the server runs without them", file=self.out, flush=True)
            return
        self.server.start()
        self._watch = asyncio.create_task(self._announce())

    async def _announce(self) -> None:
        if await asyncio.to_thread(self.server.wait_ready, 120):
            self.url = self.server.url
            print(f"dashboards: {self.url}  (Ctrl-C stops everything)", file=self.out, flush=True)
        else:  # the server keeps running: the read API and the jobs do not need Streamlit
            print(f"fleetwatch: the dashboards did not start (streamlit exit code {self.server.exit_code()}); "
                  "the server keeps running", file=self.out, flush=True)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)


def _reachable(host: str) -> str:
    """An address to connect to for a listener bound to ``host`` (a wildcard is reached on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


class JobProgress:
    """Prints the jobs' catch-up progress by family, then one line when the demo is ready."""

    migrations: Sequence = ()

    def __init__(self, jobs, *, since: datetime, out: TextIO, started: float | None = None,
                 dashboards: DashboardsExtension | None = None) -> None:
        self.jobs = jobs  # the AnalyticsExtension: its scheduler exists once it has started
        self.since = since.astimezone(timezone.utc).replace(tzinfo=None)
        self.out = out
        self.started = started if started is not None else time.monotonic()
        self.dashboards = dashboards
        self._task: asyncio.Task | None = None

    def ports(self) -> list[tuple[str, str, int]]:
        return []

    async def start(self, collector) -> None:
        # While the jobs catch up, APScheduler warns at every tick that a job is still running; these
        # progress lines say the same once, in words.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        if getattr(self.jobs, "scheduler", None) is not None:
            self._task = asyncio.create_task(self._report())

    def figures(self, now: datetime | None = None) -> dict[str, int]:
        """Percent caught up by family: the slowest job of each family."""
        now = (now or datetime.now(timezone.utc)).replace(tzinfo=None)
        scheduler = self.jobs.scheduler
        runner = scheduler.runner
        entries = [(name, job, runner.watermark(name)) for name, job in runner.jobs.items()]
        entries += [(name, task, task.watermark) for name, task in scheduler.tasks.items()]
        figures: dict[str, int] = {}
        for name, job, watermark in entries:
            # Caught up within one window of the newest due one: a job behind another (the SLO evaluation
            # behind its SLI jobs) is never further, and the figure does not flap as the clock turns a minute.
            due = _floor(now - getattr(job, "delay", timedelta(0)), job.window) - job.window
            if watermark is None or due <= self.since:
                percent = 100 if watermark is not None else 0
            else:
                percent = max(0, min(100, int(100 * (watermark - self.since) / (due - self.since))))
            family = FAMILIES.get(name, name)
            figures[family] = min(figures.get(family, 100), percent)
        return figures

    async def _report(self) -> None:
        last = None
        while True:
            figures = self.figures()
            line = "jobs: " + ", ".join(f"{family} {percent}%" for family, percent in figures.items())
            if line != last:
                print(line, file=self.out, flush=True)
                last = line
            if all(percent == 100 for percent in figures.values()):
                break
            await asyncio.sleep(POLL_SECONDS)
        while self.dashboards is not None and self.dashboards.server is not None and self.dashboards.url is None:
            if self.dashboards.server.exit_code() is not None:
                break
            await asyncio.sleep(0.5)
        where = f": {self.dashboards.url}" if self.dashboards is not None and self.dashboards.url else ""
        print(f"demo ready in {time.monotonic() - self.started:.0f} s, every job caught up{where}", file=self.out,
              flush=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def _floor(t: datetime, window: timedelta) -> datetime:
    from analytics.jobs.framework import floor_time

    return floor_time(t, window)
