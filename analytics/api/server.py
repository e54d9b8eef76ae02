"""The read API's HTTP listener (default 127.0.0.1:4319): named queries and guarded SQL.

Operators' traffic gets its own listener, tokens and TLS, apart from the
devices' OTLP ports::

    GET  /api/v1/queries                 the named queries, their parameters and types
    GET  /api/v1/query/{name}?k=v&...    run one; JSON, or an Arrow IPC stream when the
                                         request sends Accept: application/vnd.apache.arrow.stream
    POST /api/v1/sql                     one read-only SELECT (admin token only)
    GET  /api/v1/reports/drift?model=M[&version=V][&cohort=K=V][&window=1d][&format=html|json]
                                         the drift report (analytics.drift.report), same auth as queries

Answers: 200 with the rows (``truncated`` says whether the row limit cut
them; in Arrow, the ``X-Fleetwatch-Truncated`` header); 400 naming the bad
query, parameter or statement; 401 without a valid token (403 for SQL with
a read token); 503 with Retry-After when the read pool is full or DuckDB is
short of memory; 504 when a query ran past its time limit (it is stopped,
the server keeps serving). Every error is a JSON object ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pyarrow as pa
from aiohttp import web

from analytics.api.config import ApiConfig
from analytics.api.params import BadParameter
from analytics.api.queries import NamedQuery
from analytics.api.sql_guard import SqlGuard, UnsafeSql
from collector.receivers.auth import BearerAuth, server_ssl_context
from collector.config import parse_endpoint
from collector.store.read_pool import Admission, PoolBusy, QueryFailed, QueryTimeout, ReadPool, ReadResult

log = logging.getLogger("fleetwatch.api")

ARROW_STREAM = "application/vnd.apache.arrow.stream"
REPORT_PARAMS = ("model", "version", "cohort", "window", "format")


class ReadApi:
    """The aiohttp application and listener; ``await start()`` / ``await stop()``."""

    def __init__(self, config: ApiConfig, pool: ReadPool, queries: dict[str, NamedQuery],
                 guard: SqlGuard) -> None:
        self.config = config
        self.pool = pool
        self.queries = queries
        self.guard = guard
        self._read_auth = BearerAuth(config.read_tokens + config.admin_tokens)
        self._admin_auth = BearerAuth(config.admin_tokens)
        # One thread per admitted read: the pool itself bounds how many run.
        self._threads = ThreadPoolExecutor(pool.size + pool.queue_limit, thread_name_prefix="fleetwatch-read")
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_sql_bytes)
        app.router.add_get("/api/v1/queries", self._list)
        app.router.add_get("/api/v1/query/{name}", self._query)
        app.router.add_post("/api/v1/sql", self._sql)
        app.router.add_get("/api/v1/reports/drift", self._drift_report)
        return app

    async def start(self) -> None:
        host, port = parse_endpoint(self.config.endpoint, "api.endpoint")
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=server_ssl_context(self.config.tls))
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("read API listening on %s:%s", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._threads.shutdown(wait=True, cancel_futures=True)

    async def _list(self, request: web.Request) -> web.Response:
        if not self._read_auth.check(request.headers.get("Authorization")):
            return _error(401, "a read token is required (Authorization: Bearer ...)")
        return web.json_response({"queries": [q.describe() for q in self.queries.values()]})

    async def _query(self, request: web.Request) -> web.StreamResponse:
        if not self._read_auth.check(request.headers.get("Authorization")):
            return _error(401, "a read token is required (Authorization: Bearer ...)")
        name = request.match_info["name"]
        query = self.queries.get(name)
        if query is None:
            return _error(400, f"unknown query {name!r}; GET /api/v1/queries lists them")
        raw = {}
        for key, value in request.query.items():
            if key in raw:
                return _error(400, f"parameter {key!r} is given twice")
            raw[key] = value
        try:
            bound = query.bind(raw)
        except BadParameter as exc:
            return _error(400, str(exc))
        return await self._run(request, name, bound.sql, bound.params, bound.finish)

    async def _sql(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        if not self._admin_auth.enabled and self._read_auth.enabled:
            return _error(403, "ad-hoc SQL is off: no admin token is configured")
        if not self._admin_auth.check(authorization):
            if self._read_auth.enabled and self._read_auth.check(authorization):
                return _error(403, "ad-hoc SQL needs an admin token; this is a read token")
            return _error(401, "an admin token is required (Authorization: Bearer ...)")
        body = await request.text()
        if request.content_type == "application/json":
            try:
                body = json.loads(body)["sql"]
            except (ValueError, KeyError, TypeError):
                return _error(400, 'a JSON body must be {"sql": "SELECT ..."}')
        try:
            sql = self.guard.check(body)
        except UnsafeSql as exc:
            return _error(400, f"refused: {exc}")
        return await self._run(request, "sql", sql, None, None)

    async def _drift_report(self, request: web.Request) -> web.StreamResponse:
        """The drift report (analytics.drift.report) built from this server's named queries, HTML or JSON."""
        from analytics.api.runner import NamedQueryRunner, QueryUnavailable, TruncatedAnswer
        from analytics.drift.report import (DriftReportRequest, NoDriftResults, ReportError, build_drift_report,
                                            render_drift_report)

        if not self._read_auth.check(request.headers.get("Authorization")):
            return _error(401, "a read token is required (Authorization: Bearer ...)")
        raw: dict[str, str] = {}
        for key, value in request.query.items():
            if key not in REPORT_PARAMS:
                return _error(400, f"unknown parameter {key!r} for the drift report "
                                   f"(parameters: {', '.join(REPORT_PARAMS)})")
            if key in raw:
                return _error(400, f"parameter {key!r} is given twice")
            raw[key] = value
        fmt = raw.pop("format", "html")
        if fmt not in ("html", "json"):
            return _error(400, f"parameter 'format': {fmt!r} is not one of html, json")
        if not raw.get("model"):
            return _error(400, "parameter 'model' is required (ml.model.name)")
        try:
            report = DriftReportRequest.parse(raw["model"], raw.get("version"), raw.get("cohort"), raw.get("window"))
        except ReportError as exc:
            return _error(400, str(exc))
        runner = NamedQueryRunner(self.pool, self.queries, self.config)
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(self._threads, lambda: build_drift_report(runner, report))
        except (NoDriftResults, QueryUnavailable) as exc:
            return _error(404, str(exc))
        except (ReportError, BadParameter, TruncatedAnswer) as exc:
            return _error(400, str(exc))
        except PoolBusy as exc:
            return _error(503, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except QueryTimeout as exc:
            return _error(504, str(exc))
        except QueryFailed as exc:
            return _error(500, f"the drift report failed: {exc}")
        if fmt == "json":
            return web.json_response(payload, dumps=_dumps)
        return web.Response(text=render_drift_report(payload), content_type="text/html", charset="utf-8")

    async def _run(self, request: web.Request, name: str, sql: str, params: dict | None,
                   finish: Callable[[pa.Table], pa.Table] | None) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        config = self.config
        try:
            admission = self.pool.admit()
            result = await loop.run_in_executor(self._threads,
                                                lambda: run_bound(admission, sql, params, finish, config))
        except PoolBusy as exc:
            return _error(503, str(exc), headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
        except QueryTimeout as exc:
            log.warning("query %s stopped after %.1f s", name, config.timeout_seconds)
            return _error(504, str(exc))
        except QueryFailed as exc:
            return _error(400, f"query {name!r} failed: {exc}")
        if ARROW_STREAM in request.headers.get("Accept", ""):
            return _arrow_response(result)
        return web.json_response(_json_body(name, result), dumps=_dumps)


def run_bound(admission: Admission, sql: str, params: dict | None, finish: Callable[[pa.Table], pa.Table] | None,
              config: ApiConfig) -> ReadResult:
    """Run an admitted read with the API's row, size and time limits, then the query's ``finish``."""
    result = admission.run(sql, params, max_rows=config.max_rows, timeout=config.timeout_seconds,
                           max_bytes=config.max_result_bytes)
    return result if finish is None else ReadResult(finish(result.table), result.truncated, result.seconds)


def answer_body(name: str, result: ReadResult) -> dict:
    """The JSON answer for ``result`` as plain JSON values: what a client decodes, value for value."""
    return json.loads(_dumps(_json_body(name, result)))


def _json_body(name: str, result: ReadResult) -> dict:
    table = result.table
    columns = [{"name": f.name, "type": str(f.type)} for f in table.schema]
    rows = [list(row.values()) for row in _times_as_text(table).to_pylist()]
    return {"query": name, "columns": columns, "rows": rows, "row_count": table.num_rows,
            "truncated": result.truncated, "elapsed_ms": round(result.seconds * 1000, 1)}


def _times_as_text(table: pa.Table) -> pa.Table:
    """Timestamps as RFC 3339 text, nanoseconds kept (Python's datetime holds only microseconds)."""
    import pyarrow.compute as pc

    for index, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            text = pc.replace_substring(table.column(index).cast(pa.string()), " ", "T")
            text = pc.replace_substring_regex(text, r"\.0+$", "")  # whole seconds read as such
            if field.type.tz is None:  # fleetwatch's times are UTC
                text = pc.binary_join_element_wise(text, pa.scalar("Z"), "")
            table = table.set_column(index, field.name, text)
    return table


def _arrow_response(result: ReadResult) -> web.Response:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, result.table.schema) as writer:
        writer.write_table(result.table)
    return web.Response(body=sink.getvalue().to_pybytes(), content_type=ARROW_STREAM,
                        headers={"X-Fleetwatch-Truncated": str(result.truncated).lower(),
                                 "X-Fleetwatch-Row-Count": str(result.table.num_rows)})


def _json_value(value):
    if isinstance(value, datetime):
        text = value.isoformat()
        return text + "Z" if value.tzinfo is None else text
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _dumps(body) -> str:
    # NaN and infinities are not JSON: null keeps the document valid.
    return json.dumps(_finite(body), default=_json_value, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)
