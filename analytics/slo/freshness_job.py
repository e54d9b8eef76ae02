"""The freshness SLI job: per minute and group, known devices and those heard from recently.

Windowed by the gateway's receive time (``received_at``), not device time:
a device that went silent sends nothing, so only the receiving side can see
it. For each minute *m* and group of a ``freshness`` SLO::

    total = devices with telemetry (spans, metric points, histogram points,
            logs) received within sli.known_for (default 1d) before the end of m
    good  = those of them with telemetry received within
            sli.max_staleness_minutes before the end of m

A device's site, region and device class are those of its newest
telemetry, so freshness groups by device dimensions only. A minute where
devices are known but silent is computed (that is the signal); a stretch
where no device is known at all is passed over in one step::

    job = FreshnessMinute(specs)           # usually through analytics.slo.sli_job.sli_jobs(specs)
    JobRunner(store, [job]).run_due(job.name, now)

Two outputs per minute: ``slo_freshness_minute`` (the SLI rows, the same
columns as ``slo_sli_minute``) and ``device_receive_minute`` (per device and
receive minute: its newest telemetry's receive time and dimensions, and how
many rows it sent). The second is the job's memory: a minute's freshness
needs each device's newest receive time before the minute, which is read
from it (one row per device) instead of scanning a day of raw telemetry.
Receive minutes are final once they have passed, so the job does not
re-open windows for late event-time data (``late_data = False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from analytics.jobs.framework import JobOutput, Read, WindowJob
from analytics.slo.sli_sql import GoodConditions, sli_table_ddl, slo_rows_sql
from analytics.slo.spec import DIMENSIONS, SloSpec
from collector.store.files import NO_NETWORK_SETTINGS

FRESHNESS_TABLE = "slo_freshness_minute"
PRESENCE_TABLE = "device_receive_minute"
TELEMETRY_TABLES = ("span_rows", "metric_points", "histogram_points", "log_rows")
MINUTE = timedelta(minutes=1)
MINUTE_NS = 60 * 10**9

FRESHNESS_DDL = sli_table_ddl(FRESHNESS_TABLE)
PRESENCE_DDL = f"""
CREATE TABLE IF NOT EXISTS {PRESENCE_TABLE} (
    window_start TIMESTAMP NOT NULL,       -- receive minute
    device_id VARCHAR NOT NULL,
    site VARCHAR, region VARCHAR, device_class VARCHAR,  -- of the minute's newest telemetry
    last_received_at TIMESTAMP_NS NOT NULL,
    telemetry UBIGINT NOT NULL             -- rows received from the device in the minute
)
"""


def _received_sql(since: str, until: str | None = None) -> str:
    """Every telemetry row's device and receive time with ``received_at`` in [since, until)."""
    bound = f"received_at >= {since}::TIMESTAMP_NS" + (f" AND received_at < {until}::TIMESTAMP_NS" if until else "")
    return " UNION ALL ".join(
        f"SELECT device_id, site, region, device_class, received_at FROM {table} "
        f"WHERE {bound} AND device_id IS NOT NULL" for table in TELEMETRY_TABLES)


# Per device and receive minute in [$start, $end). Grouped first with the
# dimensions (cheap), then max() of a struct picks the newest: ordered by
# receive time, then the dimensions, so ties pick the same row every time.
PRESENCE_SQL = f"""
    SELECT window_start, device_id, newest.site AS site, newest.region AS region,
           newest.device_class AS device_class, newest.received_at AS last_received_at, telemetry
    FROM (
        SELECT window_start, device_id, max(struct_pack(received_at, site, region, device_class)) AS newest,
               sum(n)::UBIGINT AS telemetry
        FROM (
            SELECT date_trunc('minute', received_at)::TIMESTAMP AS window_start, device_id, site, region,
                   device_class, max(received_at) AS received_at, count(*) AS n
            FROM ({_received_sql('$start', '$end')}) GROUP BY ALL
        ) GROUP BY ALL
    )
"""

# Each device's newest receive minute in [$since, $start), from the job's own earlier
# output (one row per device and minute, so the newest receive time has no tie).
LATEST_SQL = f"""
    SELECT device_id, newest.window_start AS window_start, newest.site AS site, newest.region AS region,
           newest.device_class AS device_class, last_received_at
    FROM (
        SELECT device_id, max(last_received_at) AS last_received_at,
               arg_max(struct_pack(window_start, site, region, device_class), last_received_at) AS newest
        FROM {PRESENCE_TABLE} WHERE window_start >= $since AND window_start < $start GROUP BY device_id
    )
"""


class FreshnessMinute(WindowJob):
    """Per-minute known and fresh devices of every freshness SLO of a spec list; see the module docstring."""

    name = FRESHNESS_TABLE
    window = MINUTE
    inputs = TELEMETRY_TABLES
    outputs = (FRESHNESS_TABLE, PRESENCE_TABLE)
    late_data = False

    def __init__(self, specs: Sequence[SloSpec]) -> None:
        self.specs = [s for s in specs if s.sli.kind == "freshness"]
        # The longest lookback any SLO needs: devices older than that can no longer count.
        self.lookback = max((s.sli.known_for_duration for s in self.specs), default=timedelta(days=1))
        self.sql = self._sli_sql()

    def _sli_sql(self) -> str:
        """The SLI rows from ``presence`` (device, seen minute, dimensions, last_ns) over [$start, $end)."""
        conditions = GoodConditions()
        selects = []
        for spec in self.specs:
            # Known / fresh: the newest receive time lies within known_for / max_staleness of the minute's end.
            total = conditions.column_for(f"last_ns >= end_ns - {int(spec.sli.known_for_duration.total_seconds())}"
                                          "::BIGINT * 1000000000")
            good = conditions.column_for(f"last_ns >= end_ns - {spec.sli.max_staleness_ns}")
            selects.append(slo_rows_sql(spec, "fine", good, total_column=total))
        dims = ", ".join(d if d in ("site", "region", "device_class") else f"NULL::VARCHAR AS {d}"
                         for d in DIMENSIONS)
        return f"""
            WITH minutes AS (
                SELECT range AS window_start FROM range($start::TIMESTAMP, $end::TIMESTAMP, INTERVAL 1 MINUTE)
            ),
            grid AS (SELECT d.device_id, m.window_start FROM (SELECT DISTINCT device_id FROM presence) d, minutes m),
            state AS (
                SELECT g.window_start, epoch_ns(g.window_start) + {MINUTE_NS} AS end_ns,
                       p.site, p.region, p.device_class, p.last_ns
                FROM grid g ASOF JOIN presence p ON g.device_id = p.device_id AND g.window_start >= p.window_start
            ),
            fine AS MATERIALIZED (
                SELECT window_start, {dims}, {conditions.counts_sql()}
                FROM state GROUP BY window_start, site, region, device_class
            )
            {" UNION ALL ".join(selects)}
        """

    def compute(self, read: Read, start: datetime, end: datetime) -> JobOutput:
        fresh = read(PRESENCE_SQL, {"start": start, "end": end})
        earlier = read(LATEST_SQL, {"since": start - self.lookback, "start": start})
        columns = ["device_id", "window_start", "site", "region", "device_class"]
        presence = pa.concat_tables([t.select(columns).append_column(
            "last_ns", pc.cast(t["last_received_at"], pa.int64())) for t in (earlier, fresh)])
        rows = self._evaluate(presence, start, end) if self.specs and presence.num_rows else None
        return JobOutput({FRESHNESS_TABLE: rows, PRESENCE_TABLE: fresh},
                         rows_in=sum(fresh["telemetry"].to_pylist()) if fresh.num_rows else 0)

    def _evaluate(self, presence: pa.Table, start: datetime, end: datetime) -> pa.Table:
        # The per-device state is at most devices x minutes of the span: small, so it is
        # evaluated in a private in-memory DuckDB rather than sent back to the store.
        con = duckdb.connect(":memory:", config=NO_NETWORK_SETTINGS)
        try:
            con.register("presence", presence)
            return con.sql(self.sql, params={"start": start, "end": end}).to_arrow_table()
        finally:
            con.close()

    def next_data(self, read: Read, after: datetime) -> datetime | None:
        """The first minute at or after ``after`` in which some device is known (receive time, not marks)."""
        since = after + MINUTE - self.lookback  # telemetry from here on makes a device known at ``after``
        stored = read(f"SELECT max(last_received_at) AS t FROM {PRESENCE_TABLE} "
                      "WHERE window_start >= $since AND window_start < $after", {"since": since, "after": after})
        # is_valid, not as_py(): a receive time with nanoseconds does not convert to a datetime.
        if stored["t"][0].is_valid:  # the usual case: a fleet that reported within the lookback
            return after
        first = read(f"SELECT date_trunc('minute', min(received_at))::TIMESTAMP AS t FROM ({_received_sql('$since')})",
                     {"since": since})["t"][0].as_py()
        return None if first is None else max(after, first)
