"""Drift-job benchmark (issue 11): 50 features x 20 cohorts over 24 hours at 1,000,000 inferences an hour.

    python bench/drift_jobs.py            # 24 hours x 1,000,000 inferences (24M spans)
    python bench/drift_jobs.py --quick    # 3 hours x 100,000 inferences
    python bench/drift_jobs.py --hours 2  # 2 hours at the full rate

1. **Data** (a child process): edge inference spans synthesised in DuckDB
   SQL straight into ``span_rows`` through the Store (as
   :mod:`bench.fleet_history` does), with their ``ingest_marks``: one model
   version, 400 devices at 20 sites (the 20 site cohorts; with the regions,
   device classes, firmware versions and the whole version, 29 cohorts in
   all), 45 numeric and 5 categorical ``ml.feature.*`` attributes plus the
   predicted label and score. Site 0's ``f00`` shifts by half a standard
   deviation from the second hour on. Only hours 1 and 2 are synthesised
   (a few thousand spans a second); hours 3..N are copies of hour 2 (same
   values, fresh trace/span ids, start and receive times moved by whole
   hours, their ``ingest_marks`` written per chunk as for the synthesised
   ones), which does not change the job's work per hour.
2. **Reference** (timed in the job's child): the first hour profiled by the
   library (:func:`analytics.drift.references.window_reference`) and stored
   as the version's imported reference, so that every one of the hours is
   judged (a pinned reference would need a day of data first).
3. **The job** (a child process): :class:`analytics.drift.jobs.DriftJob`
   through :class:`analytics.jobs.framework.JobRunner`, catching up on all
   the hours: wall time, hours per minute, peak RSS of the child (its own
   ``ru_maxrss``, and before the baselines; DuckDB's own memory account),
   rows written, whether site 0's ``f00`` was flagged (and nothing else of
   site 0), and what any other cohort flagged;
4. **Baselines** in the same child, on the same rows: one plain scan of
   every span's attributes, and one scan parsing each span's JSON once (the
   least any reading of the features costs); the job's time as a multiple
   of the latter.

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.drift import machine, run_child  # noqa: E402

START = datetime(2026, 11, 2)
NUMERIC, CATEGORICAL, SITES, DEVICES = 45, 5, 20, 400
ROWS_PER_INSERT = 500_000


def _span_sql() -> str:
    numeric = [f"'\"ml.feature.f{i:02d}\":' || round(CASE WHEN {i} = 0 AND site_idx = 0 AND r >= $per_hour "
               f"THEN 0.5 ELSE 0 END + sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) + {i % 7}, 4)"
               for i in range(NUMERIC)]
    categorical = [f"'\"ml.feature.c{i}\":\"' || (['a', 'b', 'c', 'd', 'e'])[1 + floor(random() * 5)::INTEGER % 5]"
                   f" || '\"'" for i in range(CATEGORICAL)]
    attributes = " || ',' || ".join(numeric + categorical)
    return f"""
    INSERT INTO span_rows BY NAME
    SELECT (random() * 9.2e18)::UBIGINT AS trace_id_hi, (random() * 9.2e18)::UBIGINT AS trace_id_lo,
           (random() * 9.2e18)::UBIGINT AS span_id, 0::UBIGINT AS parent_span_id, 'inference' AS name,
           1::UTINYINT AS kind, make_timestamp_ns($first_ns + (r * $spacing_ns)::BIGINT) AS start_time,
           5000000::BIGINT AS duration_ns, 0::UTINYINT AS status_code, 'edge-inference' AS service_name,
           'dev-' || device_idx AS device_id, 'site-' || site_idx AS site, 'region-' || (site_idx % 3) AS region,
           'class-' || (device_idx % 4) AS device_class, 'fw-' || (device_idx % 2) AS firmware_version,
           'detector' AS model_name, '1.0' AS model_version, 'edge' AS inference_mode,
           (['ok', 'scratch', 'dent', 'misaligned'])[1 + floor(random() * 4)::INTEGER % 4] AS prediction_label,
           random() AS prediction_score, '{{' || {attributes} || '}}' AS attributes,
           make_timestamp_ns($first_ns + (r * $spacing_ns)::BIGINT + 2000000000) AS received_at
    FROM (SELECT range AS r, range % {DEVICES} AS device_idx, range % {DEVICES} % {SITES} AS site_idx
          FROM range($first_row, $end_row))
    """


def _copy_sql() -> str:
    # Everything as the source row but the ids (fresh, so no trace repeats) and the two time columns.
    ids = "(random() * 9.2e18)::UBIGINT"
    return f"""
    INSERT INTO span_rows BY NAME
    SELECT * EXCLUDE (trace_id_hi, trace_id_lo, span_id, start_time, received_at),
           {ids} AS trace_id_hi, {ids} AS trace_id_lo, {ids} AS span_id,
           make_timestamp_ns(epoch_ns(start_time) + $shift_ns) AS start_time,
           make_timestamp_ns(epoch_ns(received_at) + $shift_ns) AS received_at
    FROM span_rows WHERE start_time >= make_timestamp_ns($lo) AND start_time < make_timestamp_ns($hi)
    """


def generate(path: str, per_hour: int, hours: int) -> int:
    """Write ``hours`` hours of spans: hours 1-2 synthesised, every later hour a copy of hour 2.

    Synthesising the random JSON attributes in SQL runs at a few thousand
    spans a second on a loaded machine (2 h 15 min for 24M); copying rows
    is far cheaper. Hour 2 is already the shifted regime (site 0's ``f00``
    +0.5 sd), so hours 3..N are hour 2's rows again -- same values, fresh
    trace/span ids, start and receive times moved by whole hours -- which
    leaves the job the same work per hour: the same rows, cohorts and
    features to read, profile and judge.
    """
    from analytics.schema import ANALYTICS
    from collector.store.database import Store
    from collector.store.marks import record_marks
    from collector.store.versions import COLLECTOR

    store = Store(path, migrations=[COLLECTOR, ANALYTICS])
    store.open()
    first_ns = int((START - datetime(1970, 1, 1)).total_seconds()) * 1_000_000_000
    hour_ns = 3_600_000_000_000
    synthesised = per_hour * min(hours, 2)
    # (rows from, rows to, hours later): the synthesised chunks, then hour 2's chunks once per later hour
    chunks = [(first, min(synthesised, first + ROWS_PER_INSERT), 0)
              for first in range(0, synthesised, ROWS_PER_INSERT)]
    chunks += [(first, min(2 * per_hour, first + ROWS_PER_INSERT), hour - 1)
               for hour in range(2, hours) for first in range(per_hour, 2 * per_hour, ROWS_PER_INSERT)]
    span_sql, copy_sql = _span_sql(), _copy_sql()
    try:
        for seq, (first, end, shift) in enumerate(chunks, start=1):
            lo, hi = (first_ns + int(i * 3600e9 / per_hour) for i in (first, end))

            def write(con, first=first, end=end, seq=seq, shift=shift, lo=lo, hi=hi) -> None:
                con.execute("SELECT setseed(?)", [(seq % 1000) / 1000]).fetchall()
                with Store.transaction(con):
                    if shift:
                        con.execute(copy_sql, {"shift_ns": shift * hour_ns, "lo": lo, "hi": hi})
                    else:
                        con.execute(span_sql, {"first_ns": first_ns, "spacing_ns": 3600e9 / per_hour,
                                               "first_row": first, "end_row": end, "per_hour": per_hour})
                    lo_new, hi_new = lo + shift * hour_ns, hi + shift * hour_ns
                    record_marks(con, seq, "span_rows", f"(SELECT start_time, clock_offset_ns FROM span_rows "
                                                        f"WHERE start_time >= make_timestamp_ns({lo_new}) "
                                                        f"AND start_time < make_timestamp_ns({hi_new}))")
                store.checkpoint("row_group")

            store.submit(write).result()
    finally:
        store.close()
    return per_hour * hours


def run_job(path: str, hours: int) -> dict:
    from analytics.drift.jobs import DriftJob
    from analytics.drift.references import reference_table, window_reference
    from analytics.jobs.framework import JobRunner
    from analytics.schema import ANALYTICS
    from collector.store.database import Store
    from collector.store.versions import COLLECTOR

    store = Store(path, migrations=[COLLECTOR, ANALYTICS], readers=2)
    store.open()
    try:
        job = DriftJob()
        runner = JobRunner(store, [job])
        clock = time.perf_counter()
        reference = window_reference(runner._read, "detector", "1.0", START, START + timedelta(hours=1),
                                     job.drift_config)
        table = reference_table("detector", "1.0", reference, "imported", None, None, source="bench: first hour")

        def write(con) -> None:
            con.register("reference_rows", table)
            con.execute("INSERT INTO drift_references BY NAME SELECT * FROM reference_rows")
            con.unregister("reference_rows")

        store.submit(write).result()
        reference_s = time.perf_counter() - clock
        clock = time.perf_counter()
        report = runner.run_due(job.name, START + timedelta(hours=hours, minutes=10))
        job_s = time.perf_counter() - clock
        if report.error:
            raise RuntimeError(report.error)
        # Before the baselines' full scans: the peak so far is the reference's and the job's, and DuckDB's own
        # account says how much of it is its buffer pool (pages kept of the file, up to its memory limit).
        job_peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        duckdb_memory = runner._read("SELECT sum(memory_usage_bytes) / 2 ^ 20 AS mib, "
                                     "current_setting('memory_limit') AS memory_limit "
                                     "FROM duckdb_memory()").to_pylist()[0]
        flagged = runner._read("SELECT feature, count(*) AS hours FROM drift_results WHERE window_length = '1h' "
                               "AND cohort = '{\"site\":\"site-0\"}' AND status = 'drifted' AND feature <> '*' "
                               "GROUP BY feature ORDER BY feature").to_pylist()
        # Any other cohort flagged: those that hold site 0 (its region, the whole version, ...) may see f00's
        # shift diluted; a cohort without site 0 flagging anything would be a false alarm.
        elsewhere = runner._read("SELECT cohort || ' ' || feature AS flag, count(*) AS hours FROM drift_results "
                                 "WHERE window_length = '1h' AND cohort <> '{\"site\":\"site-0\"}' "
                                 "AND status = 'drifted' AND feature <> '*' GROUP BY flag ORDER BY flag").to_pylist()
        # Baselines in the same process, on the same rows: one plain scan of every span's attributes, and
        # one that parses each span's JSON once (the least any reading of the features costs).
        clock = time.perf_counter()
        runner._read("SELECT count(*), sum(length(attributes)) FROM span_rows")
        plain_s = time.perf_counter() - clock
        clock = time.perf_counter()
        runner._read("SELECT count(json_extract_string(attributes, '$.\"ml.feature.f00\"')) FROM span_rows")
        parse_s = time.perf_counter() - clock
        counts = runner._read("SELECT (SELECT count(*) FROM drift_summaries) AS summaries, "
                              "(SELECT count(*) FROM drift_results) AS results, "
                              "(SELECT count(DISTINCT cohort) FROM drift_summaries) AS cohorts").to_pylist()[0]
    finally:
        store.close()
    return {"reference_s": round(reference_s, 2), "job_s": round(job_s, 2),
            "seconds_per_hour_of_data": round(job_s / hours, 2), "plain_scan_s": round(plain_s, 2),
            "json_parse_scan_s": round(parse_s, 2), "job_vs_json_parse_scan": round(job_s / parse_s, 1),
            "reference_vs_json_parse_scan_of_its_hour": round(reference_s / (parse_s / hours), 1),
            "peak_rss_mib_before_baselines": round(job_peak_rss_mib),
            "duckdb_memory_mib_after_job": round(duckdb_memory["mib"]),
            "duckdb_memory_limit": duckdb_memory["memory_limit"], "features": len(reference), **counts,
            "site0_flagged_hours": {r["feature"]: r["hours"] for r in flagged},
            "other_cohorts_flagged_hours": {r["flag"]: r["hours"] for r in elsewhere}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 hours x 100,000 inferences")
    parser.add_argument("--hours", type=int, help="hours of data (default 24; 3 with --quick)")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # internal: a step in a child
    args = parser.parse_args()
    if args.step:
        step, path, *rest = args.step
        result = generate(path, int(rest[0]), int(rest[1])) if step == "generate" else run_job(path, int(rest[0]))
        print(json.dumps(result))
        return
    per_hour = 100_000 if args.quick else 1_000_000
    hours = args.hours or (3 if args.quick else 24)
    figures: dict = {"inferences_per_hour": per_hour, "hours": hours, "features": NUMERIC + CATEGORICAL + 2,
                     "sites": SITES}
    with tempfile.TemporaryDirectory(prefix="fw-drift-jobs-bench-") as tmp:
        path = str(Path(tmp) / "fleet.duckdb")
        _, wall, rss = run_child([sys.executable, __file__, "--step", "generate", path, str(per_hour), str(hours)])
        figures["generate"] = {"wall_s": round(wall, 1), "peak_rss_mib": round(rss)}
        print(f"{per_hour * hours:,} spans written in {wall:.0f} s", file=sys.stderr, flush=True)
        out, wall, rss = run_child([sys.executable, __file__, "--step", "job", path, str(hours)])
        figures["job"] = {**json.loads(out.strip().splitlines()[-1]), "wall_s": round(wall, 1),
                          "peak_rss_mib": round(rss)}
    shifted = set(figures["job"]["site0_flagged_hours"])
    figures["site0_flagged_only_f00"] = shifted == {"f00"}
    print(json.dumps({"benchmark": "drift_jobs", "quick": args.quick, "machine": machine(), **figures}), flush=True)


if __name__ == "__main__":
    main()
