"""The ``fleetwatch`` command: parses arguments, calls the library, prints errors.

Verbs::

    fleetwatch serve [--config FILE] [--db PATH] [--http-port N] [--grpc-port N] [--host ADDR]
    fleetwatch demo [--db PATH] [--http-port N] [--grpc-port N]   (sample data loaded, then serve)
    fleetwatch ingest --db PATH LOG [LOG ...]   (request logs, e.g. backfills and sample data)
    fleetwatch simulate ...        (see fleetwatch simulate --help)

Flags override the config file. Every verb's work lives in a library module;
this module only turns exceptions into one-line messages and exit codes.
Verbs that need optional packages import them lazily, so the collector runs
on a gateway that has only the collector's dependencies.
"""

from __future__ import annotations

import argparse
import sys

from collector.config import ConfigError, load_config


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="receive OTLP and write it into a DuckDB file")
    _serve_flags(p, default_db=None)


def _serve_flags(p: argparse.ArgumentParser, default_db: str | None) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML config (OpenTelemetry Collector shape)")
    p.add_argument("--db", metavar="PATH", default=default_db, help="DuckDB file (overrides exporters.duckdb.path)")
    p.add_argument("--http-port", type=int, metavar="N", help="OTLP/HTTP port (default 4318; 0 = any free port)")
    p.add_argument("--grpc-port", type=int, metavar="N", help="OTLP/gRPC port (default 4317; 0 = any free port)")
    p.add_argument("--host", metavar="ADDR", help="listen address for both receivers (default 127.0.0.1)")
    p.add_argument("--gateway-id", metavar="ID", help="this gateway's id, stamped on every row (default: host name)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _apply_serve_flags(args: argparse.Namespace):
    config = load_config(args.config)
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
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
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
    demo = sub.add_parser("demo", help="load the shipped sample fleet into a DuckDB file, then serve")
    _serve_flags(demo, default_db="fleetwatch-demo.duckdb")
    ingest = sub.add_parser("ingest", help="load request logs into a DuckDB file through the collector's pipeline")
    ingest.add_argument("--db", required=True, metavar="PATH", help="DuckDB file (must not be owned by a server)")
    ingest.add_argument("logs", nargs="+", metavar="LOG", help="request log files")
    sub.add_parser("simulate", help="generate fleet telemetry (fleetwatch simulate --help)")
    args = parser.parse_args(argv)

    if args.verb == "ingest":
        return _ingest(args)

    if args.verb in ("serve", "demo"):
        from collector.checkpoints import UnfinishedBatchError
        from collector.duckdb_exporter import DatabaseLockedError
        from collector.server import run

        try:
            config = _apply_serve_flags(args)
            if args.verb == "demo":
                _load_sample(config)
            return run(config)
        except ConfigError as exc:
            print(f"fleetwatch: configuration error: {exc}", file=sys.stderr)
            return 2
        except DatabaseLockedError as exc:
            print(f"fleetwatch: {exc}", file=sys.stderr)
            return 1
        except (OSError, UnfinishedBatchError) as exc:
            print(f"fleetwatch: cannot start: {exc}", file=sys.stderr)
            return 1
    parser.error(f"unknown verb {args.verb}")
    return 2


def _load_sample(config) -> None:
    """Load the shipped sample fleet (idempotent: a second run recognises every request)."""
    import time
    from importlib.resources import files

    from collector.bulk import ingest_request_log

    sample = files("sample_data").joinpath("fleet-sample.otlp.zst")
    print(f"loading the sample fleet into {config.exporters.duckdb.path} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    counts = ingest_request_log(config.exporters.duckdb.path, str(sample), config)
    print(f"sample fleet loaded in {time.monotonic() - started:.0f} s: {counts['spans']} spans and "
          f"{counts['points']} metric points new, {counts['duplicates']} requests already there",
          file=sys.stderr, flush=True)


def _ingest(args: argparse.Namespace) -> int:
    from collector.bulk import ingest_request_log
    from collector.checkpoints import UnfinishedBatchError
    from collector.duckdb_exporter import DatabaseLockedError

    for log_path in args.logs:
        try:
            counts = ingest_request_log(args.db, log_path)
        except (DatabaseLockedError, ConfigError, UnfinishedBatchError) as exc:
            print(f"fleetwatch: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:
            print(f"fleetwatch: cannot ingest {log_path}: {exc}", file=sys.stderr)
            return 1
        print(f"{log_path}: " + ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
