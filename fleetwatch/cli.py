"""The ``fleetwatch`` command: parses arguments, calls the library, prints errors.

Verbs::

    fleetwatch serve [--config FILE] [--db PATH] [--http-port N] [--grpc-port N] [--api-port N] [--host ADDR]
    fleetwatch demo [--db PATH] [--dashboards-port N] [...]   (the sample, analytics and dashboards)
    fleetwatch dashboards --api URL [--port N]   (the dashboards against a running server)
    fleetwatch ingest --db PATH [--shift-to NOW|ISO] LOG [LOG ...]   (request logs, e.g. backfills and sample data)
    fleetwatch query NAME [--param K=V ...] [--format table|csv|json]   (the read API)
    fleetwatch sql "SELECT ..."    (the read API, admin token)
    fleetwatch simulate ...        (see fleetwatch simulate --help)
    fleetwatch drift compare --reference REF --current CUR [--categorical a,b] --out report.html --json report.json
    fleetwatch drift reference import --db FILE --model M --version V TRAIN.parquet [--categorical a,b]
    fleetwatch report drift --model M [--version V] [--cohort K=V] [--window 1h|1d|START..END] --out PATH
    fleetwatch archive export --db FILE --to DIR [--hot-period 7d]   (the Parquet archive, docs/archive.md)
    fleetwatch analytics run --engine spark|duckdb --archive DIR --from T --to T --out DIR [--master URL]
    fleetwatch analytics load --db FILE --from-dir DIR   (the jobs over the archive, docs/scaling.md)

Flags override the config file. Every verb's work lives in a library module;
this module only turns exceptions into one-line messages and exit codes.
Verbs import the layers they need lazily (the collector, analytics, the
simulator), so a gateway's ``serve`` loads neither APScheduler nor the
simulator.

Exit codes: 0 done (``serve`` stopped by SIGTERM / Ctrl-C included); 1 the
work failed (a port in use, a --db that is not a DuckDB file, a damaged
request log, whose intact records are committed); 2 a configuration or
usage error; 130 / 143 a bulk load (``ingest``, ``demo``'s sample) stopped
by Ctrl-C / SIGTERM, with what it loaded committed.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from collector.config import ConfigError, load_config

from fleetwatch.demo_sample import DEMO_CONFIG, SAMPLE_FILE

DEMO_DB = "fleetwatch-demo.duckdb"

_SERVE_DESCRIPTION = """\
Receive OTLP from devices (OTLP/HTTP on port 4318, OTLP/gRPC on 4317) and
write it into a DuckDB file (default fleetwatch.duckdb),
and/or forward it upstream, as the config file says. /healthz and /metrics
answer on the HTTP port; the read API (docs/api.md) on 127.0.0.1:4319. With an
`analytics` section in the config, the scheduled jobs run too. Runs until
SIGTERM or Ctrl-C, then commits what was accepted and closes the file. See
docs/configuration.md."""

_DEMO_DESCRIPTION = f"""\
Load the shipped sample fleet (sample_data/{SAMPLE_FILE}: a simulated fleet's
OTLP requests; sample_data/manifest.json lists its devices and incidents) into a
DuckDB file, default ./{DEMO_DB}, with every time moved so that the sample ends
at the current minute; then serve as `fleetwatch serve` does with the whole
analytics stack of sample_data/{DEMO_CONFIG} (rollups, SLOs, health, shadow,
drift) and the dashboards on http://127.0.0.1:8501/. The load and the jobs'
catch-up print their progress; running demo again on the same file keeps the
first run's time shift and loads nothing twice. Ctrl-C or SIGTERM stops
everything (during the load: commits what was loaded and exits)."""


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="receive OTLP and write it into a DuckDB file", description=_SERVE_DESCRIPTION)
    _serve_flags(p, default_db=None)


def _serve_flags(p: argparse.ArgumentParser, default_db: str | None) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (OpenTelemetry Collector shape)")
    p.add_argument("--db", metavar="PATH", default=default_db, help="DuckDB file (overrides exporters.duckdb.path)")
    p.add_argument("--http-port", type=int, metavar="N", help="OTLP/HTTP port (default 4318; 0 = any free port)")
    p.add_argument("--grpc-port", type=int, metavar="N", help="OTLP/gRPC port (default 4317; 0 = any free port)")
    p.add_argument("--api-port", type=int, metavar="N", help="read API port (default 4319; 0 = any free port)")
    p.add_argument("--host", metavar="ADDR", help="listen address for both receivers (default 127.0.0.1)")
    p.add_argument("--gateway-id", metavar="ID", help="this gateway's id, stamped on every row (default: host name)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _apply_serve_flags(args: argparse.Namespace, *, with_analytics: bool = False):
    # The sections of the layers serve composes register themselves on import.
    import analytics.api.config  # noqa: F401  (registers "api")
    import analytics.archive.config  # noqa: F401  (registers "archive")
    import analytics.drift.section  # noqa: F401  (registers "drift")
    import analytics.health.config  # noqa: F401  (registers "health")
    import analytics.shadow.config  # noqa: F401  (registers "shadow")
    import analytics.slo.alerting_config  # noqa: F401  (registers "alerting")
    from analytics.config import AnalyticsConfig

    if with_analytics:  # the demo: its shipped config unless given one
        from fleetwatch.demo_sample import demo_config

        config = demo_config(args.config)
    else:
        config = load_config(args.config)
    if with_analytics and config.section("analytics") is None:
        config.sections["analytics"] = AnalyticsConfig()
    if args.api_port is not None:
        api = config.section("api")
        host, _, _ = api.endpoint.rpartition(":")
        api.endpoint = f"{host}:{args.api_port}"
    protocols = config.receivers.otlp.protocols
    for proto, port in (("http", args.http_port), ("grpc", args.grpc_port)):
        receiver = getattr(protocols, proto)
        host, _, old_port = receiver.endpoint.rpartition(":")
        host = args.host or host
        receiver.endpoint = f"{host}:{port if port is not None else old_port}"
    if args.db:
        config.exporters.duckdb.path = args.db
    if args.gateway_id:
        config.service.gateway_id = args.gateway_id
    if args.log_level:
        config.service.telemetry.logs.level = args.log_level
    elif with_analytics:  # the demo prints its own progress lines; the jobs' info logs would bury them
        config.service.telemetry.logs.level = "warning"
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    """Run one verb; returns the exit code. A Ctrl-C outside the phases that handle it ends without a traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("fleetwatch: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "simulate":
        try:
            from sample_data.cli import main as simulate_main
        except ImportError as exc:
            print(f"fleetwatch simulate needs the simulator extras: pip install 'fleetwatch[simulate]' ({exc})",
                  file=sys.stderr)
            return 2
        return simulate_main(argv[1:])

    parser = argparse.ArgumentParser(prog="fleetwatch", description="Fleet observability for edge AI.")
    sub = parser.add_subparsers(dest="verb", required=True)
    _serve_parser(sub)
    demo = sub.add_parser("demo", help=f"load the shipped sample fleet ({SAMPLE_FILE}) into {DEMO_DB}, then serve",
                          description=_DEMO_DESCRIPTION)
    _serve_flags(demo, default_db=DEMO_DB)
    demo.add_argument("--dashboards-port", type=int, default=8501, metavar="N",
                      help="the dashboards' port on 127.0.0.1 (default 8501)")
    ingest = sub.add_parser("ingest", help="load request logs into a DuckDB file through the collector's pipeline",
                            description="Load request logs (backfills, simulator output) into a DuckDB file "
                            "through the collector's own pipeline, with progress. A log damaged part-way has "
                            "its intact records committed and the damage reported (exit 1); Ctrl-C or SIGTERM "
                            "commits what was loaded (exit 130 / 143).")
    ingest.add_argument("--db", required=True, metavar="PATH", help="DuckDB file (must not be owned by a server)")
    ingest.add_argument("--shift-to", metavar="NOW|ISO", help="move every time of each log by one offset "
                        "(whole minutes) so that the log ends at this instant, e.g. NOW or 2026-12-01T12:00:00Z")
    ingest.add_argument("logs", nargs="+", metavar="LOG", help="request log files")
    from fleetwatch import (analytics_verbs, archive_verbs, dashboard_verbs, drift_verbs, read_verbs, report_verbs,
                            slo_verbs)

    dashboard_verbs.add_parsers(sub)
    read_verbs.add_parsers(sub)
    slo_verbs.add_parsers(sub)
    drift_verbs.add_parsers(sub)
    report_verbs.add_parsers(sub)
    archive_verbs.add_parsers(sub)
    analytics_verbs.add_parsers(sub)
    sub.add_parser("simulate", help="generate fleet telemetry (fleetwatch simulate --help)")
    args = parser.parse_args(argv)

    if args.verb == "ingest":
        return _ingest(args)
    if args.verb in ("query", "sql"):
        return read_verbs.run(args)
    if args.verb == "slo":
        return slo_verbs.run(args)
    if args.verb == "drift":
        return drift_verbs.run(args)
    if args.verb == "dashboards":
        return dashboard_verbs.run(args)
    if args.verb == "report":
        return report_verbs.run(args)
    if args.verb == "archive":
        return archive_verbs.run(args)
    if args.verb == "analytics":
        return analytics_verbs.run(args)

    if args.verb in ("serve", "demo"):
        from collector.store.checkpoints import UnfinishedBatchError
        from collector.store.files import DatabaseLockedError, NotADatabaseError
        from collector.selfmetrics import CollectorMetrics
        from collector.server import check_ports_free, run

        try:
            from analytics.service import service_extensions

            config = _apply_serve_flags(args, with_analytics=args.verb == "demo")
            extensions = service_extensions(config)
            metrics = CollectorMetrics()
            if args.verb == "demo":
                from fleetwatch.dashboard_verbs import demo_extensions, sample_moved_by

                started = time.monotonic()
                added = demo_extensions(extensions, args.dashboards_port, started)
                extensions += added
                # Before the long load, not after it, and before the file exists.
                check_ports_free(config, [p for e in extensions for p in e.ports()])
                shift = _demo_shift(config)
                sample_moved_by(added, shift)
                stopped_by = _load_sample(config, metrics, shift)
                if stopped_by is not None:
                    return 128 + stopped_by
            api = config.section("api")
            return run(config, metrics, extensions, readers=api.readers, read_queue_limit=api.queue_limit)
        except ConfigError as exc:
            print(f"fleetwatch: configuration error: {exc}", file=sys.stderr)
            return 2
        except (DatabaseLockedError, NotADatabaseError) as exc:
            print(f"fleetwatch: {exc}", file=sys.stderr)
            return 1
        except (OSError, UnfinishedBatchError, ValueError) as exc:  # ValueError: a damaged sample file
            print(f"fleetwatch: cannot start: {exc}", file=sys.stderr)
            return 1
    parser.error(f"unknown verb {args.verb}")
    return 2


def _demo_shift(config):
    """The demo's time shift: the file's own, or a new one that ends the sample at this hour."""
    from fleetwatch.demo_sample import demo_shift, shipped

    return demo_shift(config.exporters.duckdb.path, shipped(SAMPLE_FILE))


def _load_sample(config, metrics, shift) -> int | None:
    """Load the shipped sample fleet, moved by ``shift`` (idempotent: a second run recognises every request).

    Returns the number of the signal that stopped the load (what was loaded
    is committed), or None when it completed.
    """
    from collector.store.bulk import ingest_request_log
    from collector.interrupt import StopSignals
    from collector.progress import describe_counts
    from fleetwatch.demo_sample import describe_shift, shipped

    db = config.exporters.duckdb.path
    print(f"loading the sample fleet ({SAMPLE_FILE}, {describe_shift(shift)}) into {db} ...", file=sys.stderr,
          flush=True)
    with StopSignals() as stop:
        counts, seconds = _timed(lambda: ingest_request_log(db, shipped(SAMPLE_FILE), config, metrics=metrics,
                                                            should_stop=lambda: stop.requested, progress=sys.stderr,
                                                            shift=shift))
    if stop.signal_name is not None:
        print(f"fleetwatch: stopped by {stop.signal_name} while loading the sample; committed so far: "
              f"{describe_counts(counts)}", file=sys.stderr, flush=True)
        return stop.signum
    print(f"sample fleet loaded in {seconds:.0f} s: {describe_counts(counts)}", file=sys.stderr, flush=True)
    return None


def _timed(work):
    started = time.monotonic()
    result = work()
    return result, time.monotonic() - started


def _ingest(args: argparse.Namespace) -> int:
    from collector.store.bulk import PartialLoadError, ingest_request_log
    from collector.store.checkpoints import UnfinishedBatchError
    from collector.store.files import DatabaseLockedError, NotADatabaseError
    from collector.interrupt import StopSignals
    from collector.progress import describe_counts

    with StopSignals() as stop:
        for log_path in args.logs:
            try:
                shift = _shift_for(log_path, args.shift_to)
                counts, seconds = _timed(lambda: ingest_request_log(
                    args.db, log_path, should_stop=lambda: stop.requested, progress=sys.stderr, shift=shift))
            except PartialLoadError as exc:
                print(f"{log_path}: committed the intact records before the damage: {describe_counts(exc.counts)}")
                print(f"fleetwatch: damaged request log: {exc}", file=sys.stderr)
                return 1
            except (DatabaseLockedError, NotADatabaseError, ConfigError, UnfinishedBatchError) as exc:
                print(f"fleetwatch: {exc}", file=sys.stderr)
                return 1
            except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a batch's commit failed
                print(f"fleetwatch: cannot ingest: {exc}", file=sys.stderr)
                return 1
            if stop.signal_name is not None:
                print(f"fleetwatch: stopped by {stop.signal_name} while loading {log_path}; committed so far: "
                      f"{describe_counts(counts)}", file=sys.stderr)
                return 128 + stop.signum
            moved = f" (times moved by {shift})" if shift else ""
            print(f"{log_path}: {describe_counts(counts)} in {seconds:.0f} s{moved}")
    return 0


def _shift_for(log_path: str, target: str | None):
    """The shift that ends ``log_path`` at ``target`` (NOW or an ISO instant); None without a target."""
    from datetime import datetime, timezone

    from collector.store.bulk import shift_to

    if target is None:
        return None
    if target.upper() == "NOW":
        end = datetime.now(timezone.utc)
    else:
        try:
            end = datetime.fromisoformat(target.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"--shift-to: {target!r} is neither NOW nor an ISO 8601 instant") from None
    return shift_to(log_path, end)


if __name__ == "__main__":
    sys.exit(main())
