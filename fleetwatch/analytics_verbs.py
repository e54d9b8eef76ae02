"""``fleetwatch analytics run`` and ``fleetwatch analytics load``: the window jobs over the Parquet archive.

::

    fleetwatch analytics run --engine spark --archive /srv/archive --from 2026-11-02T00:00:00Z \\
        --to 2026-11-04T00:00:00Z --out /srv/out [--master spark://host:7077] [--config fleetwatch.yaml]
    fleetwatch analytics load --db central.duckdb --from-dir /srv/out

``run`` computes the rollups, the event SLIs (SLOs from ``--slos`` or the
config's ``analytics.slos``), shadow and ground truth, and drift for the
windows of [--from, --to) on Spark or in-process DuckDB, and writes their
aggregates as Parquet under --out; ``load`` replaces those windows in a
DuckDB file no server holds (docs/scaling.md). Errors are one line on
stderr: exit 2 for usage, 1 for unreadable input.
"""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    analytics = sub.add_parser("analytics", help="the window jobs over the Parquet archive (docs/scaling.md)",
                               description="The window jobs over the Parquet archive, on Spark or DuckDB.")
    verbs = analytics.add_subparsers(dest="analytics_verb", required=True)
    run = verbs.add_parser(
        "run", help="compute the window jobs over an archive and write their aggregates as Parquet",
        description="Compute golden-signal rollups, event SLIs, shadow / ground truth and drift for the "
                    "windows of [--from, --to) over a Parquet archive, on Spark or in-process DuckDB; "
                    "write one directory of Parquet per output table under --out.")
    run.add_argument("--engine", choices=["spark", "duckdb"], default="duckdb")
    run.add_argument("--archive", required=True, metavar="DIR", help="the archive's root (docs/archive.md)")
    run.add_argument("--from", dest="start", required=True, metavar="T", help="RFC 3339 time, e.g. 2026-11-02T00:00:00Z")
    run.add_argument("--to", dest="end", required=True, metavar="T", help="RFC 3339 time (exclusive)")
    run.add_argument("--out", required=True, metavar="DIR", help="where the aggregates go")
    run.add_argument("--master", default="local[2]", metavar="URL",
                     help="Spark master: local[N] (default local[2]) or spark://host:7077")
    run.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                     help="a Spark setting, e.g. spark.driver.memory=4g (repeatable)")
    run.add_argument("--config", metavar="FILE", help="fleetwatch config: analytics.slos, drift and shadow sections")
    run.add_argument("--slos", metavar="FILE", help="SLO file for the SLI job (default: the config's)")
    run.add_argument("--jobs", default="", metavar="A,B", help="only these jobs (default all)")
    load = verbs.add_parser(
        "load", help="load an archive run's aggregates into a DuckDB file (replacing their windows)",
        description="Replace the windows an archive run covered with its aggregates in a DuckDB file that no "
                    "server holds; the file's alerts, reports and dashboards then use them.")
    load.add_argument("--db", required=True, metavar="FILE", help="the central DuckDB file")
    load.add_argument("--from-dir", required=True, metavar="DIR", help="the --out of fleetwatch analytics run")


def run(args: argparse.Namespace) -> int:
    if args.analytics_verb == "load":
        return _load(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from analytics.api.params import parse_time
    from analytics.engines.run import archive_jobs, run_archive, supported_jobs
    from analytics.times import utc_naive
    from collector.config import ConfigError

    try:
        start, end = utc_naive(parse_time(args.start)), utc_naive(parse_time(args.end))
        jobs = archive_jobs(*_job_settings(args), only=[j.strip() for j in args.jobs.split(",") if j.strip()])
    except (ConfigError, ValueError, OSError) as exc:
        print(f"fleetwatch analytics run: {exc}", file=sys.stderr)
        return 2
    try:
        engine = _engine(args)
    except (ValueError, OSError) as exc:
        print(f"fleetwatch analytics run: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    if not args.jobs:  # all jobs: those this engine runs, saying which it leaves out
        runs, skipped = supported_jobs(engine, [job.name for job in jobs])
        for name in skipped:
            print(f"fleetwatch analytics run: {name} left out: {engine.unsupported_jobs[name]}", file=sys.stderr)
        jobs = [job for job in jobs if job.name in runs]
    try:
        summary = run_archive(engine, jobs, start, end, args.out,
                              progress=lambda line: print(f"fleetwatch analytics run: {line}", file=sys.stderr))
    except (ValueError, OSError, RuntimeError) as exc:  # RuntimeError: a query the engine failed
        print(f"fleetwatch analytics run: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    finally:
        engine.close()
    rows = ", ".join(f"{table} {n}" for table, n in summary.rows.items())
    print(f"{summary.engine}: {start.isoformat()} to {end.isoformat()} -> {args.out}: {rows}")
    return 0


def _job_settings(args: argparse.Namespace):
    """(SLO specs, shadow config, drift config) from --config and --slos."""
    import analytics.config  # noqa: F401  (registers "analytics")
    import analytics.drift.section  # noqa: F401  (registers "drift")
    import analytics.shadow.config  # noqa: F401  (registers "shadow")
    from analytics.slo.spec import load_slo_file
    from collector.config import load_config

    config = load_config(args.config)
    section = config.section("analytics")
    specs = load_slo_file(args.slos) if args.slos else section.slo_specs() if section is not None else []
    return specs, config.section("shadow"), config.section("drift")


def _engine(args: argparse.Namespace):
    if args.engine == "spark":
        from analytics.engines.spark_engine import SparkEngine

        conf = dict(item.split("=", 1) for item in args.spark_conf if "=" in item)
        if len(conf) != len(args.spark_conf):
            raise ValueError(f"--spark-conf takes KEY=VALUE, got {args.spark_conf!r}")
        return SparkEngine(args.archive, master=args.master, conf=conf)
    from analytics.engines.duckdb_engine import DuckDBEngine

    return DuckDBEngine(args.archive)


def _load(args: argparse.Namespace) -> int:
    from analytics.engines.load import load_run
    from collector.store.files import DatabaseLockedError, NotADatabaseError
    from collector.store.migrations import SchemaError

    try:
        loaded = load_run(args.db, args.from_dir)
    except (ValueError, OSError, DatabaseLockedError, NotADatabaseError, SchemaError) as exc:
        print(f"fleetwatch analytics load: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"loaded into {args.db}: " + ", ".join(f"{table} {n}" for table, n in loaded.items()))
    return 0
