"""The read API over a real DuckDB file written by the collector, through real HTTP."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pyarrow as pa
import pytest

from analytics.api.config import ApiConfig
from analytics.api.catalog import CATALOG
from analytics.api.server import ARROW_STREAM, ReadApi
from analytics.api.sql_guard import SqlGuard
from collector.store.bulk import ingest_request_log
from collector.store.files import open_database
from collector.store.read_pool import ReadPool
from collector.request_log import RequestLogWriter
from tests.otlp_requests import gauge_request, trace_request

START_NS = 1_764_583_200_000_000_000  # 2025-12-01T10:00:00Z
READ, ADMIN = "read-token-1", "admin-token-1"


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    log_path, db = folder / "load.otlp.zst", folder / "fw.duckdb"
    span_ids = {}
    with RequestLogWriter(log_path) as log:
        for i in range(3):
            body, ids = trace_request(40, device=f"cam-{i}", start_ns=START_NS + i * 10**9)
            span_ids[f"cam-{i}"] = ids
            log.append("traces", START_NS + 5 * 10**9, body)
        log.append("metrics", START_NS + 6 * 10**9, gauge_request(7))
    ingest_request_log(db, log_path)
    return db, span_ids


def call(database, requests, **config):
    """Serve the file on a free port, run ``requests(session, base)``, stop."""
    db, _ = database

    async def run():
        con = open_database(str(db))
        api_config = ApiConfig(endpoint="127.0.0.1:0", **config)
        api_config.read.bearer_tokens = [READ]
        api_config.admin.bearer_tokens = [ADMIN]
        api_config.validate()
        pool = ReadPool(con, size=api_config.readers, queue_limit=api_config.queue_limit)
        api = ReadApi(api_config, pool, CATALOG, SqlGuard({"spans", "metric_points", "devices"}))
        await api.start()
        try:
            async with aiohttp.ClientSession() as session:
                return await requests(session, f"http://127.0.0.1:{api.port}")
        finally:
            await api.stop()
            pool.close()
            con.close()

    return asyncio.run(run())


def auth(token=READ):
    return {"Authorization": f"Bearer {token}"}


async def get(session, url, token=READ, accept=None, **kwargs):
    headers = {**(auth(token) if token else {}), **({"Accept": accept} if accept else {})}
    async with session.get(url, headers=headers, **kwargs) as response:
        body = await response.read()
        return response.status, response.headers, body


def test_named_query_answers_json_and_arrow_with_the_same_rows(database):
    _, span_ids = database

    async def requests(session, base):
        url = f"{base}/api/v1/query/device_spans?device_id=cam-1&since=2025-12-01T09:00:00Z&until=2025-12-01T11:00:00Z"
        status, _, body = await get(session, url)
        assert status == 200, body
        as_json = json.loads(body)
        status, headers, body = await get(session, url, accept=ARROW_STREAM)
        assert status == 200 and headers["Content-Type"] == ARROW_STREAM
        return as_json, pa.ipc.open_stream(body).read_all(), headers

    as_json, table, headers = call(database, requests)
    assert as_json["row_count"] == 40 and not as_json["truncated"]
    names = [c["name"] for c in as_json["columns"]]
    assert names == table.column_names
    assert sorted(row[names.index("span_id")] for row in as_json["rows"]) == sorted(span_ids["cam-1"])
    assert sorted(table.column("span_id").to_pylist()) == sorted(span_ids["cam-1"])
    assert headers["X-Fleetwatch-Truncated"] == "false"


def test_row_limit_says_it_truncated(database):
    async def requests(session, base):
        return await get(session, f"{base}/api/v1/query/device_spans?device_id=cam-0&since=-3650d")

    status, _, body = call(database, requests, max_rows=25)
    answer = json.loads(body)
    assert status == 200 and answer["row_count"] == 25 and answer["truncated"] is True


def test_tokens_unknown_queries_and_bad_parameters(database):
    async def requests(session, base):
        out = {}
        out["no token"] = await get(session, f"{base}/api/v1/queries", token=None)
        out["wrong token"] = await get(session, f"{base}/api/v1/queries", token="nope")
        out["list"] = await get(session, f"{base}/api/v1/queries")
        out["unknown query"] = await get(session, f"{base}/api/v1/query/everything")
        out["unknown param"] = await get(session, f"{base}/api/v1/query/device_spans?device_id=x&devise=y")
        out["missing param"] = await get(session, f"{base}/api/v1/query/device_spans")
        out["bad time"] = await get(session, f"{base}/api/v1/query/device_spans?device_id=x&since=yesterday")
        out["twice"] = await get(session, f"{base}/api/v1/query/device_spans?device_id=x&device_id=y")
        return out

    out = call(database, requests)
    assert out["no token"][0] == 401 and out["wrong token"][0] == 401
    listed = json.loads(out["list"][2])["queries"]
    assert {"device_spans", "trace_spans", "device_metrics"} <= {q["name"] for q in listed}
    spans = next(q for q in listed if q["name"] == "device_spans")
    assert {"name": "device_id", "type": "string", "required": True}.items() <= spans["params"][0].items()
    for case, needle in (("unknown query", "unknown query 'everything'"), ("unknown param", "'devise'"),
                         ("missing param", "'device_id' is required"), ("bad time", "'since'"),
                         ("twice", "'device_id' is given twice")):
        status, _, body = out[case]
        assert status == 400 and needle in json.loads(body)["error"], (case, body)


def test_injection_through_a_parameter_is_just_a_value(database):
    db, _ = database

    async def requests(session, base):
        evil = "x' OR '1'='1"
        return await get(session, f"{base}/api/v1/query/device_spans",
                         params={"device_id": evil, "since": "-3650d"})

    status, _, body = call(database, requests)
    assert status == 200 and json.loads(body)["row_count"] == 0


ATTEMPTS = [
    "INSERT INTO metric_points SELECT * FROM metric_points",
    "DELETE FROM devices",
    "CREATE TABLE stolen AS SELECT * FROM devices",
    "COPY devices TO '/tmp/fleetwatch-stolen.csv'",
    "ATTACH '/tmp/fleetwatch-other.duckdb' AS other",
    "INSTALL httpfs",
    "SET threads = 1",
    "PRAGMA database_size",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT 1; DELETE FROM devices",
]


def test_ad_hoc_sql_needs_an_admin_token_and_refuses_writes_and_escapes(database):
    db, _ = database

    async def requests(session, base):
        async def post(sql, token=ADMIN, json_body=False):
            kwargs = {"json": {"sql": sql}} if json_body else {"data": sql}
            async with session.post(f"{base}/api/v1/sql", headers=auth(token), **kwargs) as response:
                return response.status, await response.json()

        out = {"ok": await post("SELECT device_id, count(*) AS n FROM spans GROUP BY ALL ORDER BY 1"),
               "json body": await post("SELECT count(*) AS n FROM metric_points", json_body=True),
               "read token": await post("SELECT 1", token=READ),
               "no token": await post("SELECT 1", token="")}
        out["refused"] = [await post(sql) for sql in ATTEMPTS]
        return out

    before = _counts(db)
    out = call(database, requests)
    assert out["ok"][0] == 200 and out["ok"][1]["rows"] == [["cam-0", 40], ["cam-1", 40], ["cam-2", 40]]
    assert out["json body"][1]["rows"] == [[7]]
    assert out["read token"][0] == 403 and out["no token"][0] == 401
    for sql, (status, body) in zip(ATTEMPTS, out["refused"]):
        assert status == 400 and body["error"].startswith("refused:"), (sql, body)
    assert _counts(db) == before


def test_a_query_past_its_time_limit_is_stopped_and_the_server_keeps_serving(database):
    async def requests(session, base):
        slow = "SELECT count(*) FROM spans a, spans b, spans c, range(1000000) r"
        async with session.post(f"{base}/api/v1/sql", headers=auth(ADMIN), data=slow) as response:
            first = response.status, await response.json()
        after = await get(session, f"{base}/api/v1/query/trace_spans?trace_id=00")
        return first, after

    (status, body), after = call(database, requests, timeout=0.5)
    assert status == 504 and "longer than 0.5 s" in body["error"]
    assert after[0] == 200


def test_reads_past_the_pool_and_queue_get_503_with_retry_after(database):
    async def requests(session, base):
        slow = "SELECT count(*) FROM spans a, spans b, spans c, range(1000000) r"

        async def one():
            async with session.post(f"{base}/api/v1/sql", headers=auth(ADMIN), data=slow) as response:
                return response.status, response.headers.get("Retry-After")

        return await asyncio.gather(*(one() for _ in range(4)))

    answers = call(database, requests, timeout=1.0, readers=1, queue_limit=1)
    assert sorted(status for status, _ in answers) == [503, 503, 504, 504]
    assert all(retry == "1" for status, retry in answers if status == 503)


def _counts(db) -> tuple:
    con = open_database(str(db), read_only=True)
    try:
        tables = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()[0]
        return tables, con.execute("SELECT count(*) FROM devices").fetchone()[0]
    finally:
        con.close()


def test_the_client_reads_json_and_arrow_and_turns_errors_into_one_line(database):
    from analytics.api.client import ApiError, ReadApiClient

    def use(base):
        client = ReadApiClient(base, token=READ)
        out = {"queries": client.queries(),
               "json": client.query("device_spans", device_id="cam-2", since="-3650d"),
               "arrow": client.query_arrow("device_spans", device_id="cam-2", since="-3650d")}
        for case, call_ in (("bad param", lambda: client.query("device_spans", device_id="x", since="soon")),
                            ("read token sql", lambda: client.sql("SELECT 1")),
                            ("no token", lambda: ReadApiClient(base).queries())):
            try:
                call_()
            except ApiError as exc:
                out[case] = (exc.status, str(exc))
        out["admin sql"] = ReadApiClient(base, token=ADMIN).sql("SELECT count(*) AS n FROM spans").rows
        return out

    async def requests(session, base):
        return await asyncio.to_thread(use, base)

    out = call(database, requests)
    assert {q["name"] for q in out["queries"]} >= {"device_spans", "golden_signals"}
    assert len(out["json"].rows) == 40 == out["arrow"].num_rows
    assert sorted(r["span_id"] for r in out["json"].records()) == sorted(out["arrow"].column("span_id").to_pylist())
    assert out["bad param"][0] == 400 and "parameter 'since'" in out["bad param"][1]
    assert out["read token sql"][0] == 403 and out["no token"][0] == 401
    assert "\n" not in out["bad param"][1]
    assert out["admin sql"] == [[120]]
    with pytest.raises(ApiError, match="cannot reach the read API"):
        ReadApiClient("http://127.0.0.1:9", timeout=5).queries()
