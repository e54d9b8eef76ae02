"""Which relations the read API's raw named queries read: the hot tables, or the archive-reading views.

The raw queries (:data:`analytics.api.catalog.RAW_QUERIES`) name their
relations as fragments, ``{spans}`` and ``{metric_points}``, and add
``{archive_range}`` to their conditions. Without an archive they read the
hot tables; ``fleetwatch serve`` with an ``archive`` section swaps them for
the views of :mod:`analytics.archive.views`, whose ``archive_date`` lets
DuckDB skip every archive file before the range::

    queries = reading_archive(served_queries(versions))   # same queries, archive-reading sources
"""

from __future__ import annotations

import dataclasses

from analytics.api.queries import NamedQuery
from analytics.archive.views import ARCHIVE_DATE


def hot_sources(values: dict) -> dict[str, str]:
    """The fragments of a raw query on a file without an archive."""
    return {"spans": "spans", "metric_points": "metric_points", "archive_range": ""}


def archive_sources(values: dict) -> dict[str, str]:
    """The fragments of a raw query reading through the archive."""
    # Partitions go by the raw event time, ranges by the skew-corrected one: a day of slack
    # covers devices whose clocks were off by up to a day.
    since = f"AND {ARCHIVE_DATE} >= CAST($since AS DATE) - 1" if "since" in values else ""
    return {"spans": "spans_all", "metric_points": "metric_points_all", "archive_range": since}


def reading_archive(queries: dict[str, NamedQuery]) -> dict[str, NamedQuery]:
    """``queries`` with every raw query reading through the archive; the others unchanged."""
    return {name: dataclasses.replace(q, derive=archive_sources) if q.derive is hot_sources else q
            for name, q in queries.items()}
