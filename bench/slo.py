"""SLO benchmark (issue 10): the burn-rate evaluation over 30 days of a 1,000-device fleet, its tick, the backtest.

    python bench/slo.py            # 30 days, 4 models x 50 sites, ten SLOs
    python bench/slo.py --quick    # 8 days, 4 models x 10 sites

1. **History.** ``slo_sli_minute`` gets 30 days of per-minute good/total
   for ten SLOs grouped by model and site (4 models x 50 sites: 200 groups
   each, 2,000 in all; about 15,000 events per group and minute, i.e. a
   fleet at 50,000 inferences/s), written straight into the table in DuckDB
   SQL. One group has a 30-minute outage two days before the end.
2. **Catch-up.** :class:`analytics.slo.job.SloJob` evaluates every
   minute of the 30 days from nothing, as ``fleetwatch serve`` does on a
   file loaded with history (a day per transaction, alerts, evaluations
   and watermark written). Baseline in the same process: one scan summing
   the whole table per SLO and group.
3. **Tick.** One more minute of SLI rows, then ``run_due`` once: the
   incremental evaluation of one instant for every SLO and group (median
   of 5). Baseline: the one-scan sum again, which a tick that re-summed its
   windows from the table would pay every minute.
4. **Cold cycle**: a fresh evaluator (as after a restart) computes every
   window, budget and rule of every SLO and group at the newest instant
   from the 30 days of minutes: the full 30-day recompute of the burn rates.
5. **Backtest** of the 30 days (``--reuse-sli``: the file's SLI minutes),
   with the outage's page checked.
6. **SLI tick at 50,000 inferences/s**: one minute of raw spans through the
   SLI job, from :func:`bench.slo_sli.measure_sli_jobs`.

Times are wall-clock seconds and CPU seconds (``time.process_time``); the
last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analytics.schema import ANALYTICS  # noqa: E402
from analytics.slo.backtest import backtest  # noqa: E402
from analytics.slo.evaluator import SloEvaluator  # noqa: E402
from analytics.slo.job import SloJob  # noqa: E402
from analytics.slo.spec import slos_from_dict  # noqa: E402
from bench.ingest import machine  # noqa: E402
from bench.slo_sli import measure_sli_jobs  # noqa: E402
from collector.store.database import Store  # noqa: E402
from collector.store.versions import COLLECTOR  # noqa: E402

END = datetime(2026, 11, 1)
OUTAGE_GROUP = ("m1", "s07")
SPECS = slos_from_dict({"slos": [
    *({"name": f"success-{i}", "objective": objective, "group_by": ["model_name", "site"],
       "alerting": {"min_events": 1000}} for i, objective in enumerate((0.99, 0.995, 0.999, 0.9995, 0.999))),
    *({"name": f"latency-{i}", "objective": objective, "sli": {"kind": "latency", "threshold_ms": ms},
       "group_by": ["model_name", "site"]} for i, (objective, ms) in enumerate(
        ((0.99, 50), (0.95, 30), (0.999, 100), (0.98, 40), (0.9, 20)))),
]})


def write_history(store: Store, days: int, models: int, sites: int) -> int:
    """Per-minute good/total of every SLO and group for ``days`` before :data:`END`, a day per insert."""
    names = ", ".join(f"('{spec.name}')" for spec in SPECS)
    outage_start = (days - 2) * 1440 + 600
    for day in range(days):
        def write(con, day=day):
            con.execute(f"""
                INSERT INTO slo_sli_minute BY NAME
                WITH groups AS (
                    SELECT 'm' || m AS model_name, 's' || lpad(s::VARCHAR, 2, '0') AS site
                    FROM range({models}) a(m), range({sites}) b(s)
                ), rows AS (
                    SELECT minute, slo, model_name, site,
                           (12000 + hash(minute, slo, model_name, site) % 6000)::BIGINT AS total,
                           (hash(site, minute, slo) % 4)::BIGINT AS bad
                    FROM range({day * 1440}, {(day + 1) * 1440}) r(minute), (VALUES {names}) v(slo), groups
                )
                SELECT TIMESTAMP '{END - timedelta(days=days):%Y-%m-%d %H:%M:%S}' + to_minutes(minute) AS window_start,
                       slo, model_name, NULL AS model_version, site, NULL AS region, NULL AS device_class,
                       '{{"model_name":"' || model_name || '","site":"' || site || '"}}' AS group_key,
                       (total - CASE WHEN model_name = '{OUTAGE_GROUP[0]}' AND site = '{OUTAGE_GROUP[1]}'
                                       AND minute >= {outage_start} AND minute < {outage_start + 30}
                                     THEN total // 2 ELSE bad END)::UBIGINT AS good,
                       total::UBIGINT AS total
                FROM rows
            """)
        store.submit(write).result()
    store.submit(lambda con: con.execute(
        "INSERT OR REPLACE INTO job_state VALUES ('slo_sli_minute', ?, 0, current_timestamp)", [END])).result()
    store.submit(lambda con: con.execute("CHECKPOINT")).result()  # the history's write-ahead log is not the job's
    return days * 1440 * len(SPECS) * models * sites


def timed(work) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = work()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def one_scan(store: Store) -> None:
    store.reads.run("SELECT slo, group_key, sum(good)::BIGINT AS g, sum(total)::BIGINT AS t FROM slo_sli_minute "
                    "GROUP BY ALL", max_rows=10**6, timeout=3600)


def add_minute(store: Store, at: datetime) -> None:
    def write(con):
        con.execute("INSERT INTO slo_sli_minute SELECT window_start + INTERVAL 1 MINUTE, * EXCLUDE (window_start) "
                    "FROM slo_sli_minute WHERE window_start = ?", [at - timedelta(minutes=1)])
        con.execute("INSERT OR REPLACE INTO job_state VALUES ('slo_sli_minute', ?, 0, current_timestamp)",
                    [at + timedelta(minutes=1)])
    store.submit(write).result()


def run(workdir: Path, days: int, models: int, sites: int, sli_minutes: int) -> dict:
    db = workdir / "slo.duckdb"
    store = Store(str(db), migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    figures: dict = {"days": days, "slos": len(SPECS), "groups_per_slo": models * sites}
    try:
        rows, wall, _ = timed(lambda: write_history(store, days, models, sites))
        figures.update(sli_rows=rows, history_write_s=round(wall, 1))
        _, scan_wall, scan_cpu = timed(lambda: one_scan(store))
        figures.update(baseline_scan_s=round(scan_wall, 3), baseline_scan_cpu_s=round(scan_cpu, 3))
        job = SloJob(store, SPECS, sli_jobs=["slo_sli_minute"])
        chunks, wall, cpu = timed(lambda: job.run_due(END + timedelta(minutes=1)))
        assert chunks and chunks[-1][1] == END, chunks
        figures.update(catch_up_s=round(wall, 2), catch_up_cpu_s=round(cpu, 2),
                       catch_up_over_scan=round(wall / scan_wall, 1))
        ticks = []
        at = END
        for _ in range(5):
            add_minute(store, at)
            _, wall, cpu = timed(lambda: job.run_due(at + timedelta(minutes=2)))
            ticks.append((wall, cpu))
            at += timedelta(minutes=1)
        tick_wall = statistics.median(t[0] for t in ticks)
        figures.update(tick_s=round(tick_wall, 3), tick_cpu_s=round(statistics.median(t[1] for t in ticks), 3),
                       tick_over_scan=round(tick_wall / scan_wall, 3))
        # The cycle from nothing: a fresh evaluator (a restart) computes every window of every SLO and
        # group at the newest instant from the 30 days of minutes.
        def read(sql, params):
            return store.reads.run(sql, params, max_rows=10**8, timeout=3600, max_bytes=2**40).table
        cold, wall, cpu = timed(lambda: SloEvaluator(SPECS).evaluate(read, at - timedelta(minutes=1), at,
                                                                     keep_evaluations=lambda t: True))
        figures.update(cold_cycle_s=round(wall, 2), cold_cycle_cpu_s=round(cpu, 2),
                       cold_cycle_over_scan=round(wall / scan_wall, 2),
                       cold_cycle_rows=cold.evaluation_table().num_rows)
        stored = store.reads.run("SELECT count(*) AS n FROM slo_evaluations", max_rows=1, timeout=600).table
        figures["evaluation_rows"] = stored["n"][0].as_py()
    finally:
        store.close()
    transitions, wall, cpu = timed(lambda: list(backtest(str(db), SPECS, END - timedelta(days=days), END,
                                                         reuse_sli=True)))
    pages = {(t.slo, tuple(sorted(t.group.values()))) for t in transitions if t.severity == "page"}
    figures.update(backtest_s=round(wall, 2), backtest_cpu_s=round(cpu, 2), backtest_transitions=len(transitions),
                   backtest_pages=sorted(f"{slo} {'/'.join(group)}" for slo, group in pages))
    assert ("success-2", OUTAGE_GROUP) in pages, "the outage did not page in the backtest"
    figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if sli_minutes:
        sli = measure_sli_jobs(workdir, sli_minutes)
        figures["sli_tick"] = {k: v for k, v in sli.items() if k != "jobs"}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 days of 40 groups per SLO")
    parser.add_argument("--no-sli", action="store_true", help="skip the SLI job at 50,000 inferences/s")
    args = parser.parse_args()
    days, models, sites = (8, 4, 10) if args.quick else (30, 4, 50)
    workdir = Path(tempfile.mkdtemp(prefix="fw-bench-slo-"))
    try:
        figures = run(workdir, days, models, sites, 0 if args.no_sli else 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{figures['slos']} SLOs x {figures['groups_per_slo']} groups, {days} days ({figures['sli_rows']:,} SLI "
          f"rows): catch-up {figures['catch_up_s']} s ({figures['catch_up_over_scan']}x one scan), "
          f"tick {figures['tick_s']} s, cold cycle {figures['cold_cycle_s']} s, backtest {figures['backtest_s']} s",
          flush=True)
    print(json.dumps({"benchmark": "slo", "quick": args.quick, "machine": machine(), **figures}), flush=True)


if __name__ == "__main__":
    main()
