"""``fleetwatch archive export``: the Parquet archive of a DuckDB file no server holds.

::

    fleetwatch archive export --db fleet.duckdb --to /srv/archive
    fleetwatch archive export --db fleet.duckdb --to /srv/archive --until 2026-11-04T00:00:00Z --hot-period 7d

Exports every closed hour (ending at least ``--delay`` before ``--until``,
default now) not yet archived; with ``--hot-period`` it then deletes from
the file the archived rows older than that. Safe to stop at any moment
(even ``kill -9``) and to run again: it continues where it stopped. One
line per part on stderr, a summary on stdout.
"""

from __future__ import annotations

import argparse
import sys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    archive = sub.add_parser("archive", help="the Parquet archive of the raw tables (docs/archive.md)",
                             description="The hive-partitioned Parquet archive of the raw tables (docs/archive.md).")
    verbs = archive.add_subparsers(dest="archive_verb", required=True)
    export = verbs.add_parser(
        "export", help="export closed hours of a DuckDB file to the archive",
        description="Export every closed hour of a DuckDB file that no server holds to a Parquet archive, "
                    "atomically and resumably; with --hot-period, then delete the archived rows older than it.")
    export.add_argument("--db", required=True, metavar="FILE", help="the DuckDB file (not owned by a server)")
    export.add_argument("--to", required=True, metavar="DIR", help="the archive's root directory")
    export.add_argument("--until", default="now", metavar="T",
                        help="RFC 3339 time or relative (-2h); hours closed by then are exported (default now)")
    export.add_argument("--delay", default="1h", metavar="D", help="an hour is closed this long after it ends (1h)")
    export.add_argument("--hot-period", metavar="D",
                        help="after exporting, delete archived rows older than this (e.g. 7d); default: keep all")
    export.add_argument("--quiet", action="store_true", help="no line per part")


def run(args: argparse.Namespace) -> int:
    from analytics.api.params import parse_time
    from analytics.archive.config import ArchiveConfig
    from analytics.archive.exporter import ArchiveError
    from analytics.archive.offline import export_file
    from analytics.times import utc_naive
    from collector.config import ConfigError, parse_duration
    from collector.store.files import DatabaseLockedError, NotADatabaseError

    try:
        config = ArchiveConfig(path=args.to, delay=parse_duration(args.delay, "--delay"),
                               hot_period=parse_duration(args.hot_period, "--hot-period") if args.hot_period else 0)
        config.validate("archive")
        until = utc_naive(parse_time(args.until))
    except (ConfigError, ValueError) as exc:
        print(f"fleetwatch archive export: {exc}", file=sys.stderr)
        return 2
    progress = None if args.quiet else (lambda line: print(f"fleetwatch archive export: {line}", file=sys.stderr,
                                                           flush=True))
    try:
        exported, pruned = export_file(args.db, config, until, progress=progress)
    except (DatabaseLockedError, NotADatabaseError, ArchiveError, OSError, ValueError) as exc:
        print(f"fleetwatch archive export: {exc}", file=sys.stderr)
        return 1
    line = f"exported {exported.parts} parts, {exported.rows} rows, {exported.bytes} bytes to {args.to}"
    if pruned is not None:
        line += f"; pruned {pruned.pruned_rows} rows ({pruned.pruned_hours} table-hours) from {args.db}"
    print(line)
    return 0
