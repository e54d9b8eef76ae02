"""APScheduler (3.x) driving the window jobs inside the process that owns the DuckDB file.

One APScheduler job per window job (and per extra task, such as the SLO
evaluation: anything with ``name``, ``window``, ``watermark``, ``on_run``
and ``run_due()``), each on its own interval, so that a
slow or failing job never delays another (``max_instances=1`` keeps one run
of a job at a time; ``coalesce`` folds missed ticks into one, since a run
already does everything that is due). A task that runs behind some jobs
names them in ``after`` (the SLO evaluation: its SLI jobs) and is run again
as soon as one of them has run, not at its next tick up to 20 s later::

    scheduler = AnalyticsScheduler(runner, registry, tasks=[slo_job])
    scheduler.start()        # first runs at once: catch-up after a stop
    ...
    scheduler.shutdown()     # waits for running jobs; their windows commit or not at all

Runs are counted in ``/metrics``: ``fleetwatch_job_runs_total{job,outcome}``,
``fleetwatch_job_seconds_total{job}`` and the age of each job's watermark,
``fleetwatch_job_watermark_lag_seconds{job}``, the number to alert on when
analytics fall behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analytics.jobs.framework import JobRunner
from collector.selfmetrics import Registry

log = logging.getLogger("fleetwatch.jobs")

# How often a job looks for due windows: often enough that a minute window
# is computed soon after its delay, rarely enough to cost nothing idle.
MAX_TICK = timedelta(seconds=20)


class AnalyticsScheduler:
    """Runs every job of a :class:`JobRunner` on its own interval; see the module docstring."""

    def __init__(self, runner: JobRunner, registry: Registry, *, workers: int = 2, tasks: Sequence[Any] = ()) -> None:
        self.runner = runner
        self.tasks = {task.name: task for task in tasks}
        if set(self.tasks) & set(runner.jobs):
            raise ValueError(f"task names clash with job names: {sorted(set(self.tasks) & set(runner.jobs))}")
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )
        self._runs = registry.counter("fleetwatch_job_runs_total", "Window spans computed, by job and outcome.",
                                      ["job", "outcome"])
        self._seconds = registry.counter("fleetwatch_job_seconds_total", "Seconds spent computing, by job.", ["job"])
        registry.gauge_callback_labelled(
            "fleetwatch_job_watermark_lag_seconds",
            "Seconds between now and the end of the newest window computed, by job.", ["job"],
            lambda: {(name,): self._lag(name) for name in [*runner.jobs, *self.tasks]})
        runner.on_run = self._count
        for task in self.tasks.values():
            task.on_run = self._count

    def start(self) -> None:
        now = datetime.now(timezone.utc)
        for name, job in self.runner.jobs.items():
            tick = min(job.window, MAX_TICK)
            self._scheduler.add_job(self._run, IntervalTrigger(seconds=tick.total_seconds(), timezone=timezone.utc),
                                    args=[name], id=name, name=name, next_run_time=now)
        for name, task in self.tasks.items():
            tick = min(task.window, MAX_TICK)
            self._scheduler.add_job(self._run_task, IntervalTrigger(seconds=tick.total_seconds(), timezone=timezone.utc),
                                    args=[name], id=name, name=name, next_run_time=now)
        self._scheduler.start()
        log.info("analytics scheduler started with jobs: %s", ", ".join([*self.runner.jobs, *self.tasks]))

    def shutdown(self, wait: bool = True) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)

    def _run(self, name: str) -> None:
        try:
            self.runner.run_due(name)
        except Exception:  # run_due records its own failures; this is the last line of defence
            log.exception("job %s crashed", name)
        for task in self.tasks.values():
            if name in getattr(task, "after", ()) and self._scheduler.running:
                self._scheduler.modify_job(task.name, next_run_time=datetime.now(timezone.utc))

    def _run_task(self, name: str) -> None:
        try:
            self.tasks[name].run_due()
        except Exception:  # a task records its own failures; this is the last line of defence
            log.exception("task %s crashed", name)

    def _count(self, job: str, outcome: str, seconds: float) -> None:
        self._runs.inc(job=job, outcome=outcome)
        self._seconds.inc(seconds, job=job)

    def _lag(self, name: str) -> float:
        task = self.tasks.get(name)
        watermark = task.watermark if task is not None else self.runner.watermark(name)
        if watermark is None:
            return float("nan")
        return (datetime.now(timezone.utc).replace(tzinfo=None) - watermark).total_seconds()
