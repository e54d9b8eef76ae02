"""``fleetwatch query`` and ``fleetwatch sql``: the read API from a terminal.

::

    fleetwatch query golden_signals --param since=-6h --param group_by=site
    fleetwatch query fleet_inventory --format csv > devices.csv
    fleetwatch query --list
    FLEETWATCH_API_TOKEN=... fleetwatch sql "SELECT site, count(*) FROM spans GROUP BY ALL"

Both talk to ``--url`` (default the local instance, http://127.0.0.1:4319)
with the token in ``FLEETWATCH_API_TOKEN``; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    query = sub.add_parser("query", help="run a named query of the read API",
                           description="Run a named query on a running fleetwatch (see docs/api.md).")
    query.add_argument("name", nargs="?", help="the named query (omit with --list)")
    query.add_argument("--param", "-p", action="append", default=[], metavar="K=V",
                       help="a parameter, e.g. --param since=-6h (repeatable)")
    query.add_argument("--list", action="store_true", help="list the named queries and their parameters")
    add_common_options(query)
    sql = sub.add_parser("sql", help="run one read-only SELECT through the read API (admin token)",
                         description="Run one read-only SELECT on a running fleetwatch (admin token).")
    sql.add_argument("statement", help="the SELECT statement")
    add_common_options(sql)


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("FLEETWATCH_API_URL", "http://127.0.0.1:4319"),
                        help="the read API (default %(default)s; env FLEETWATCH_API_URL)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait for the answer")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.verb == "query" and args.list:
        return _answer(args, out, lambda client: client.queries())
    if args.verb == "query" and not args.name:
        print("fleetwatch query: name a query, or --list to see them", file=sys.stderr)
        return 2
    if args.verb == "sql":
        return _answer(args, out, lambda client: client.sql(args.statement))
    try:
        params = _params(args.param)
    except ValueError as exc:
        print(f"fleetwatch {args.verb}: {exc}", file=sys.stderr)
        return 1
    return run_query(args.name, params, args, out)


def run_query(name: str, params: dict[str, str], args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run named query ``name`` with ``params`` against ``args.url`` and print it in ``args.format``."""
    return _answer(args, out, lambda client: client.query(name, **params))


def _answer(args: argparse.Namespace, out: TextIO, ask) -> int:
    from analytics.api.client import ApiError, ReadApiClient

    verb = " ".join(v for v in (args.verb, getattr(args, "slo_verb", None)) if v)
    try:
        client = ReadApiClient(args.url, token=os.environ.get("FLEETWATCH_API_TOKEN") or None, timeout=args.timeout)
        result = ask(client)
    except (ApiError, ValueError) as exc:
        print(f"fleetwatch {verb}: {exc}", file=sys.stderr)
        return 1
    if isinstance(result, list):  # the catalog
        _print_catalog(result, out)
        return 0
    render(result.names, result.rows, args.format, out)
    if result.truncated:
        print(f"fleetwatch {verb}: the answer was cut at {len(result.rows)} rows (the server's row limit)",
              file=sys.stderr)
    return 0


def _params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param takes key=value, got {pair!r}")
        if key in params:
            raise ValueError(f"parameter {key!r} is given twice")
        params[key] = value
    return params


def render(names: list[str], rows: list[list[Any]], fmt: str, out: TextIO) -> None:
    if fmt == "json":
        for row in rows:
            out.write(json.dumps(dict(zip(names, row))) + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(names)
        writer.writerows([[_cell(v) for v in row] for row in rows])
    else:
        cells = [[_cell(v) for v in row] for row in rows]
        widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
        out.write("  ".join(n.ljust(w) for n, w in zip(names, widths)).rstrip() + "\n")
        out.write("  ".join("-" * w for w in widths) + "\n")
        for row in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
        out.write(f"({len(rows)} row{'s' if len(rows) != 1 else ''})\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _print_catalog(queries: list[dict], out: TextIO) -> None:
    for query in queries:
        out.write(f"{query['name']}: {query['doc']}\n")
        for param in query["params"]:
            extra = " (required)" if param.get("required") else (
                f" (default {param['default']})" if "default" in param else "")
            choices = f" one of {', '.join(param['choices'])}" if param.get("choices") else ""
            out.write(f"    {param['name']}: {param['type']}{extra}{choices}  {param.get('doc', '')}\n")
