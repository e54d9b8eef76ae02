"""Named queries run in-process, answering exactly what the read API's JSON answers.

Callers that assemble several named queries (the drift report) take a
*query runner*: ``run(name, params) -> records``, ``params`` being the
query-string texts the API takes and each record a dict of plain JSON
values. Three runners give the same records, value for value:

    run = ReadApiClient(url, token).records                # through a running server
    run = NamedQueryRunner(pool, served_queries(versions))  # in the server, on its read pool
    with open_file_runner("archive.duckdb") as run:         # a file no server holds, read-only
        run("drift_status", {"model_name": "defect-detector"})

Binding, limits and the JSON conversion are the read API's own
(:mod:`analytics.api.server`); failures are the pool's exceptions
(:class:`~collector.store.read_pool.PoolBusy`, ``QueryTimeout``,
``QueryFailed``), :class:`~analytics.api.params.BadParameter`, or
:class:`QueryUnavailable` for a query the file cannot answer.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import duckdb

from analytics.api.config import ApiConfig
from analytics.api.queries import NamedQuery
from analytics.api.server import answer_body, run_bound
from collector.store.read_pool import ReadPool

QueryRunner = Callable[[str, Mapping[str, str]], list[dict]]


class QueryUnavailable(LookupError):
    """The named query is unknown here, or the file lacks the tables it reads (no analytics schema)."""


class TruncatedAnswer(RuntimeError):
    """A named query's answer was cut at the row or size limit: a report built on it would be incomplete."""


class NamedQueryRunner:
    """Runs named queries on a read pool with the API's limits; ``runner(name, params)`` -> JSON records."""

    def __init__(self, pool: ReadPool, queries: Mapping[str, NamedQuery], config: ApiConfig | None = None) -> None:
        self.pool = pool
        self.queries = queries
        self.config = config or ApiConfig()

    def __call__(self, name: str, params: Mapping[str, str]) -> list[dict]:
        query = self.queries.get(name)
        if query is None:
            raise QueryUnavailable(f"the query {name!r} is not served here (no analytics tables in this file?)")
        bound = query.bind(dict(params))
        result = run_bound(self.pool.admit(), bound.sql, bound.params, bound.finish, self.config)
        if result.truncated:
            raise TruncatedAnswer(f"the answer of {name!r} was cut at {result.table.num_rows} rows "
                                  f"(api.max_rows {self.config.max_rows}): narrow the window")
        body = answer_body(name, result)
        return [dict(zip([c["name"] for c in body["columns"]], row)) for row in body["rows"]]


@contextmanager
def open_file_runner(path: str, config: ApiConfig | None = None) -> Iterator[NamedQueryRunner]:
    """A runner on a DuckDB file opened read-only (no server may hold it: DatabaseLockedError names that)."""
    from analytics.api.catalog import served_queries
    from collector.store.files import NotADatabaseError, open_database

    if not os.path.isfile(path):
        raise NotADatabaseError(f"{path}: no such file")
    con = open_database(path, read_only=True)
    pool = None
    try:
        try:
            versions = dict(con.sql("SELECT owner, max(version) FROM schema_migrations GROUP BY owner").fetchall())
        except duckdb.Error:
            raise NotADatabaseError(f"{path} is not a fleetwatch database (no schema_migrations table)") from None
        pool = ReadPool(con, size=1, queue_limit=0)
        yield NamedQueryRunner(pool, served_queries(versions), config)
    finally:
        if pool is not None:
            pool.close()
        con.close()
