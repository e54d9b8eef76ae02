"""``fleetwatch slo backtest`` and ``fleetwatch slo status``.

::

    fleetwatch slo backtest --db fleet.duckdb --slos slos.yaml --from 2026-11-02T00:00:00Z --to 2026-11-04T00:00:00Z
    fleetwatch slo status                     # through the read API of the running server
    fleetwatch slo status --slo detector-success --format json

``backtest`` prints one JSON line per alert transition (``at``, ``slo``,
``group``, ``severity``, ``state``, ``burn_rates``, ``alertname``) on
stdout; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from fleetwatch import read_verbs

    slo = sub.add_parser("slo", help="SLOs: backtest rules on history, show their status",
                         description="SLOs, error budgets and burn-rate alerts (docs/slo.md).")
    verbs = slo.add_subparsers(dest="slo_verb", required=True)
    backtest = verbs.add_parser(
        "backtest", help="evaluate SLO rules at every minute of a past range of a file",
        description="Evaluate the SLO file's rules with the live code at every minute of [--from, --to) of a "
                    "DuckDB file that no server holds; print each alert transition as one JSON line.")
    backtest.add_argument("--db", required=True, metavar="FILE", help="the DuckDB file (not owned by a server)")
    backtest.add_argument("--slos", required=True, metavar="FILE", help="the SLO file (docs/slo.md)")
    backtest.add_argument("--from", dest="start", required=True, metavar="T",
                          help="RFC 3339 time (2026-11-02T00:00:00Z) or relative (-7d)")
    backtest.add_argument("--to", dest="end", required=True, metavar="T", help="RFC 3339 time or relative (now)")
    backtest.add_argument("--reuse-sli", action="store_true",
                          help="use the file's own SLI minutes (only if a server computed them with these SLOs)")
    status = verbs.add_parser("status", help="each SLO and group: budget left, burn rates, alerts",
                              description="The SLO status table from a running fleetwatch's read API.")
    status.add_argument("--slo", help="only this SLO")
    read_verbs.add_common_options(status)


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.slo_verb == "backtest":
        return _backtest(args, out)
    return _status(args, out)


def _backtest(args: argparse.Namespace, out: TextIO) -> int:
    from analytics.api.params import parse_time
    from analytics.slo.backtest import backtest
    from analytics.slo.spec import load_slo_file
    from analytics.times import utc_naive
    from collector.store.files import DatabaseLockedError, NotADatabaseError

    try:
        start, end = (utc_naive(parse_time(t)) for t in (args.start, args.end))
        specs = load_slo_file(args.slos)
        count = 0
        for transition in backtest(args.db, specs, start, end, reuse_sli=args.reuse_sli,
                                   progress=lambda line: print(f"fleetwatch slo backtest: {line}", file=sys.stderr)):
            out.write(json.dumps(transition.to_json()) + "\n")
            count += 1
        out.flush()
    except (DatabaseLockedError, NotADatabaseError, ValueError, OSError) as exc:
        print(f"fleetwatch slo backtest: {exc}", file=sys.stderr)
        return 1
    print(f"fleetwatch slo backtest: {count} transition{'s' if count != 1 else ''}", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    from fleetwatch import read_verbs

    params = {"slo": args.slo} if args.slo else {}
    return read_verbs.run_query("slo_status", params, args, out)
