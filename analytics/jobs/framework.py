"""The window-job framework every analytics job runs on.

A job declares the length of its windows, the tables it writes and how to
compute one span of windows from the raw tables. The runner decides which
windows are due and makes each result durable exactly once::

    class Rollup(WindowJob):
        name = "golden_signals"
        window = timedelta(minutes=1)
        outputs = ("rollup_minute",)          # each has a window_start TIMESTAMP column
        inputs = ("span_rows",)               # late rows here re-open windows

        def compute(self, read, start, end) -> JobOutput:
            table = read("SELECT ... WHERE t >= $start AND t < $end GROUP BY ...",
                         {"start": start, "end": end})
            return JobOutput({"rollup_minute": table}, rows_in=...)

    runner = JobRunner(store, [Rollup()], metrics)
    runner.run_due(job, now)                  # what APScheduler calls

What the runner guarantees:

- **Idempotent windows.** A span of windows is computed on a read cursor,
  then replaced in one write transaction: its old output rows deleted, the
  new ones inserted, a ``job_runs`` row and the job's watermark written.
  Re-running a window is harmless; ``kill -9`` at any moment leaves each
  window either as it was or fully replaced, and the watermark says which.
- **No gaps.** The watermark is the end of the newest window computed with
  nothing missing before it. After a stop, every window from the watermark
  to now is computed, oldest first, in chunks, with a progress line.
- **Late data.** The writer records, per batch, which minutes of event time
  received rows (``ingest_marks``, with a sequence number). Marks behind a
  job's watermark that it has not seen re-open exactly those windows.
- **Failures stay put.** A failing span is recorded in ``job_runs`` with its
  error, counted, and retried with exponential backoff; the watermark does
  not move past it and no other job waits for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb
import pyarrow as pa

from analytics.times import utc_naive
from collector.store.database import Store

log = logging.getLogger("fleetwatch.jobs")

Read = Callable[[str, dict], pa.Table]
EPOCH = datetime(1970, 1, 1)


@dataclass
class JobOutput:
    """What one computation produced: a table of rows per output table, and how many rows it read."""

    tables: dict[str, pa.Table | None]  # None: the span has no rows (its old ones are still deleted)
    rows_in: int = 0

    @property
    def rows_out(self) -> int:
        return sum(t.num_rows for t in self.tables.values() if t is not None)


class WindowJob:
    """Base class of a window job; subclasses set the class attributes and ``compute``."""

    name: str = ""
    window: timedelta = timedelta(minutes=1)
    # How long after a window closes it is first computed, so that data
    # in flight (batch timers, a gateway's queue) is usually in.
    delay: timedelta = timedelta(seconds=30)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    # Most windows one write transaction replaces when catching up. Six hours of minutes: on the sample a
    # minute job's catch-up took 5-8x longer in hour chunks than in six-hour ones, the same SQL planned
    # and the same transaction committed per hour (docs/benchmarks.md, the demo).
    chunk: int = 360
    # How far back a job with no watermark starts, at most (None: from the oldest input row).
    backfill: timedelta | None = None
    # False for a job windowed by receive time: rows arriving late in event
    # time (ingest marks) change none of its windows, so they re-open none.
    late_data: bool = True

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        raise NotImplementedError

    def late_windows(self, read: Read, minutes: list[datetime]) -> set[datetime]:
        """The windows that late rows in these event-time ``minutes`` (ingest marks) change.

        By default the windows the minutes fall in. A job windowed by another
        row's time (a label joined to the inference it labels) maps them to
        those windows; the runner keeps the ones behind the watermark.
        """
        return {floor_time(m, self.window) for m in minutes}

    def replaced_rows(self, table: str, start: datetime, end: datetime) -> tuple[str, list]:
        """The rows of ``table`` a computation of [start, end) replaces: a WHERE condition and its values.

        By default the rows whose ``window_start`` is in the span; a job whose
        output also holds longer windows (a day built from its hours) widens it.
        """
        return "window_start >= ? AND window_start < ?", [start, end]

    def first_window(self, read: Read, now: datetime) -> datetime | None:
        """The window to start from when the job has never run: the oldest input data."""
        return self.next_data(read, EPOCH)

    def next_data(self, read: Read, after: datetime) -> datetime | None:
        """The first minute at or after ``after`` that any input table has rows in (from ingest_marks)."""
        if not self.inputs:
            return None
        tables = ", ".join(f"'{t}'" for t in self.inputs)  # class attributes, not user input
        return read(f"SELECT min(minute) AS first FROM ingest_marks WHERE table_name IN ({tables}) "
                    "AND minute >= $after", {"after": after})["first"][0].as_py()


def floor_time(t: datetime, window: timedelta) -> datetime:
    """``t`` rounded down to a multiple of ``window`` since the epoch (naive UTC in, naive UTC out)."""
    step = int(window.total_seconds() * 1_000_000)
    micros = (t - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=micros - micros % step)


def replace_windows(con: duckdb.DuckDBPyConnection, job: WindowJob, start: datetime, end: datetime,
                    tables: dict[str, pa.Table | None]) -> None:
    """Replace the rows of [start, end) in each of ``job``'s outputs by ``tables``' (inside the caller's transaction).

    The one place results become rows: the runner's windows, an archive run's
    state and ``fleetwatch analytics load`` all replace windows this way.
    """
    for table in job.outputs:
        condition, values = job.replaced_rows(table, start, end)
        con.execute(f"DELETE FROM {table} WHERE {condition}", values)
        rows = tables.get(table)
        if rows is not None and rows.num_rows:
            con.register("job_output", rows)
            try:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM job_output")
            finally:
                con.unregister("job_output")


@dataclass
class _State:
    watermark: datetime | None
    marks_seen: int
    failures: int = 0
    retry_at: float = 0.0


@dataclass
class RunReport:
    """What one call of :meth:`JobRunner.run_due` did."""

    job: str
    spans: list[tuple[datetime, datetime, str]] = field(default_factory=list)  # (start, end, reason)
    rows_out: int = 0
    error: str | None = None
    skipped: str | None = None


class JobRunner:
    """Runs window jobs against a :class:`Store`; see the module docstring."""

    def __init__(self, store: Store, jobs: Sequence[WindowJob], *, query_timeout: float = 300.0,
                 max_backoff: float = 600.0, on_run: Callable[[str, str, float], None] | None = None) -> None:
        names = [job.name for job in jobs]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"jobs need distinct, non-empty names: {names}")
        self.store = store
        self.jobs = {job.name: job for job in jobs}
        self.query_timeout = query_timeout
        self.max_backoff = max_backoff
        self.on_run = on_run  # (job, outcome, seconds): the process's metrics
        self._state: dict[str, _State] = {}
        store.marks_floor = self.marks_floor

    def marks_floor(self) -> int:
        """The newest ingest mark every job has looked at: older ones may be merged (0 before all have run)."""
        readers = [name for name, job in self.jobs.items() if job.inputs]
        if any(name not in self._state for name in readers):
            return 0
        return min((self._state[name].marks_seen for name in readers), default=0)

    # -- reading ---------------------------------------------------------
    def _read(self, sql: str, params: dict | None = None) -> pa.Table:
        assert self.store.reads is not None
        result = self.store.reads.run(sql, params or None, max_rows=50_000_000, timeout=self.query_timeout,
                                      max_bytes=2**40)
        return result.table

    def _load_state(self, job: WindowJob) -> _State:
        if job.name not in self._state:
            row = self._read("SELECT watermark, marks_seen FROM job_state WHERE job = $job", {"job": job.name})
            if row.num_rows:
                self._state[job.name] = _State(row["watermark"][0].as_py(), row["marks_seen"][0].as_py())
            else:
                self._state[job.name] = _State(None, 0)
        return self._state[job.name]

    def watermark(self, name: str) -> datetime | None:
        """The end of the newest window of job ``name`` with nothing missing before it (None: never ran)."""
        state = self._state.get(name)
        return state.watermark if state else None

    # -- the work --------------------------------------------------------
    def run_due(self, name: str, now: datetime | None = None) -> RunReport:
        """Compute every window of job ``name`` that is due at ``now``: late ones first, then new ones."""
        job = self.jobs[name]
        report = RunReport(name)
        state = self._load_state(job)
        if time.monotonic() < state.retry_at:
            report.skipped = f"backing off after {state.failures} failures"
            return report
        now = utc_naive(now or datetime.now(timezone.utc))
        try:
            for start, end, reason, marks in self._due_spans(job, state, now):
                self._run_span(job, state, start, end, reason, marks, report)
        except Exception as exc:  # recorded in job_runs by _run_span; keep the job and the others alive
            state.failures += 1
            backoff = min(self.max_backoff, 2.0 ** min(state.failures, 20))
            state.retry_at = time.monotonic() + backoff
            report.error = f"{type(exc).__name__}: {exc}"
            log.error("job %s failed (attempt %d, next try in %.0f s): %.300s", name, state.failures, backoff, exc)
            return report
        state.failures = 0
        return report

    def _due_spans(self, job: WindowJob, state: _State, now: datetime):
        """(start, end, reason, marks_seq) spans to compute, oldest first, late windows before new ones."""
        newest_closed = floor_time(now - job.delay, job.window)
        # Every write of this round read data committed after the marks up to
        # ``seq``: once it is done, those marks need no second look.
        seq = self._marks_seq() if job.inputs else None
        if state.watermark is not None and seq is not None and seq > state.marks_seen and job.late_data:
            late = self._late_windows(job, state, seq)
            for i, start in enumerate(late):
                # Seen only with the last late window, so that a crash half-way
                # leaves the rest to be found again.
                yield start, start + job.window, "late-data", seq if i == len(late) - 1 else None
        start = state.watermark
        if start is None:
            first = job.first_window(self._read, now)
            if first is None:
                return
            if job.backfill is not None:
                first = max(first, now - job.backfill)
            start = floor_time(first, job.window)
        total = int((newest_closed - start) / job.window)
        if total > job.chunk:
            log.info("job %s catching up on %d windows from %s", job.name, total, start.isoformat())
        done = 0
        while start < newest_closed:
            end = min(start + job.window * job.chunk, newest_closed)
            reason = "catch-up" if total > job.chunk else "scheduled"
            if job.inputs:
                # A stretch with no data at all (a fleet that was off, a file
                # of old history) is passed over in one step, not window by window.
                following = job.next_data(self._read, start)
                skip_to = newest_closed if following is None else min(floor_time(following, job.window),
                                                                      newest_closed)
                if skip_to >= end:
                    end, reason = skip_to, "no-data"
            yield start, end, reason, seq
            done += int((end - start) / job.window)
            if total > job.chunk:
                log.info("job %s: %d of %d windows done (up to %s)", job.name, done, total, end.isoformat())
            start = end

    def _marks_seq(self) -> int:
        return self._read("SELECT coalesce(max(seq), 0) AS seq FROM ingest_marks")["seq"][0].as_py()

    def _late_windows(self, job: WindowJob, state: _State, seq: int) -> list[datetime]:
        """The windows behind the watermark that rows marked after ``state.marks_seen`` (up to ``seq``) touch."""
        tables = ", ".join(f"'{t}'" for t in job.inputs)  # class attributes, not user input
        # Minutes at or after the watermark count too: a job may map them to earlier windows.
        minutes = self._read(
            f"SELECT DISTINCT minute FROM ingest_marks WHERE seq > $seen AND seq <= $seq "
            f"AND table_name IN ({tables}) ORDER BY minute",
            {"seen": state.marks_seen, "seq": seq})["minute"].to_pylist()
        return sorted(w for w in job.late_windows(self._read, minutes) if w < state.watermark)

    def _run_span(self, job: WindowJob, state: _State, start: datetime, end: datetime, reason: str,
                  marks_seq: int | None, report: RunReport) -> None:
        started = datetime.now(timezone.utc).replace(tzinfo=None)
        clock = time.perf_counter()
        try:
            output = JobOutput({}, 0) if reason == "no-data" else job.compute(self._read, start, end)
            unknown = set(output.tables) - set(job.outputs)
            if unknown:
                raise ValueError(f"job {job.name} produced undeclared tables {sorted(unknown)}")
        except Exception as exc:
            self._record_failure(job, start, end, reason, started, exc)
            self._count(job.name, "failed", time.perf_counter() - clock)
            raise
        advances = state.watermark is None or end > state.watermark
        new_watermark = end if advances else state.watermark

        def write(con: duckdb.DuckDBPyConnection) -> None:
            with Store.transaction(con):
                replace_windows(con, job, start, end, output.tables)
                con.execute(
                    "INSERT INTO job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ok', NULL)",
                    [job.name, start, end, reason, started, datetime.now(timezone.utc).replace(tzinfo=None),
                     output.rows_in, output.rows_out])
                con.execute(
                    "INSERT OR REPLACE INTO job_state VALUES (?, ?, ?, current_timestamp)",
                    [job.name, new_watermark, marks_seq if marks_seq is not None else state.marks_seen])

        try:
            self.store.submit(write).result()
        except Exception as exc:
            self._record_failure(job, start, end, reason, started, exc)
            self._count(job.name, "failed", time.perf_counter() - clock)
            raise
        state.watermark = new_watermark
        if marks_seq is not None:
            state.marks_seen = marks_seq
        report.spans.append((start, end, reason))
        report.rows_out += output.rows_out
        self._count(job.name, "ok", time.perf_counter() - clock)

    def _record_failure(self, job: WindowJob, start, end, reason, started, exc: BaseException) -> None:
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("INSERT INTO job_runs VALUES (?, ?, ?, ?, ?, ?, 0, 0, 'failed', ?)",
                        [job.name, start, end, reason, started, datetime.now(timezone.utc).replace(tzinfo=None),
                         f"{type(exc).__name__}: {exc}"[:2000]])
        try:
            self.store.submit(write).result()
        except Exception:
            log.exception("recording the failure of job %s failed too", job.name)

    def _count(self, job: str, outcome: str, seconds: float) -> None:
        if self.on_run is not None:
            self.on_run(job, outcome, seconds)
