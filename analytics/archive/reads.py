"""Named queries that read raw rows, made to read through the archive where the server has one.

A named query that names a raw relation (``spans``, ``span_rows``,
``metric_points``, ``histogram_points``, ``log_records``, ``log_rows``)
after ``FROM`` or ``JOIN`` reads, with an ``archive`` section, its
archive-reading view (:mod:`analytics.archive.views`) instead, under the
same name. A query with a ``since`` parameter keeps only the archive's
partitions from the day before ``since`` on (``archive_date``), so that
DuckDB opens no archive file for a range inside the hot period::

    queries = reading_archive(served_queries(versions))
    # device_spans: ... FROM (SELECT * EXCLUDE (archive_date) FROM spans_all
    #                          WHERE archive_date >= CAST($since AS DATE) - 1) AS spans, bounds ...

The day of slack is because partitions go by the device's raw event time
and ranges by the skew-corrected one.
"""

from __future__ import annotations

import dataclasses
import re

from analytics.api.queries import NamedQuery
from analytics.archive.views import ALL_VIEWS, ARCHIVE_DATE, SHAPED_VIEWS

#: relation a query names -> the view that reads it through the archive
THROUGH_ARCHIVE = {**ALL_VIEWS, **{name: twin for name, _, twin in SHAPED_VIEWS.values()}}
_RAW = re.compile(r"\b(FROM|JOIN)(\s+)(" + "|".join(THROUGH_ARCHIVE) + r")\b(?!\s*\()", re.IGNORECASE)


def through_archive(query: NamedQuery) -> NamedQuery:
    """``query`` reading its raw relations through the archive (itself when it reads none)."""
    since = any(p.name == "since" for p in query.params)
    condition = f" WHERE {ARCHIVE_DATE} >= CAST($since AS DATE) - 1" if since else ""

    def swap(match: re.Match) -> str:
        name = match.group(3)
        return (f"{match.group(1)}{match.group(2)}(SELECT * EXCLUDE ({ARCHIVE_DATE}) "
                f"FROM {THROUGH_ARCHIVE[name.lower()]}{condition}) AS {name}")

    sql = _RAW.sub(swap, query.sql)
    return query if sql == query.sql else dataclasses.replace(query, sql=sql)


def reading_archive(queries: dict[str, NamedQuery]) -> dict[str, NamedQuery]:
    """Every query of ``queries`` through :func:`through_archive`."""
    return {name: through_archive(query) for name, query in queries.items()}
