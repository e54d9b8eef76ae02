"""A small client of the read API, for the CLI, the dashboards and scripts.

Standard library only (pyarrow when Arrow is asked for), and it connects
to nothing but the URL it is given::

    client = ReadApiClient("http://127.0.0.1:4319", token=os.environ.get("FLEETWATCH_API_TOKEN"))
    client.queries()                                   # [{"name": ..., "params": [...]}, ...]
    result = client.query("golden_signals", since="-6h", group_by="site")
    result.columns, result.rows, result.truncated
    table = client.query_arrow("device_spans", device_id="cam-0001")   # pyarrow.Table
    client.sql("SELECT site, count(*) FROM spans GROUP BY ALL")        # admin token
    html = client.drift_report("defect-detector", cohort="site=atl-factory-2")   # bytes of one HTML file
    client.records("drift_status", {"model_name": "defect-detector"})  # a query runner (analytics.api.runner)

Every failure is an :class:`ApiError` with a one-line message: the
server's own words for a 4xx/5xx answer, or what went wrong reaching it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ARROW_STREAM = "application/vnd.apache.arrow.stream"
DEFAULT_URL = "http://127.0.0.1:4319"


class ApiError(RuntimeError):
    """The read API refused or failed a request, or could not be reached; ``status`` 0 for the latter."""

    def __init__(self, message: str, status: int = 0, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class QueryResult:
    columns: list[dict]      # [{"name": ..., "type": ...}]
    rows: list[list[Any]]
    truncated: bool

    @property
    def names(self) -> list[str]:
        return [c["name"] for c in self.columns]

    def records(self) -> list[dict[str, Any]]:
        names = self.names
        return [dict(zip(names, row)) for row in self.rows]


class ReadApiClient:
    """Talks to one fleetwatch read API; see the module docstring."""

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, timeout: float = 60.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the read API URL must look like http://host:4319, not {url!r}")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def queries(self) -> list[dict]:
        return json.loads(self._request("GET", "/api/v1/queries"))["queries"]

    def query(self, name: str, **params: Any) -> QueryResult:
        return _result(json.loads(self._request("GET", self._query_path(name, params))))

    def query_arrow(self, name: str, **params: Any):
        import pyarrow as pa

        body = self._request("GET", self._query_path(name, params), accept=ARROW_STREAM)
        return pa.ipc.open_stream(body).read_all()

    def sql(self, statement: str) -> QueryResult:
        body = json.dumps({"sql": statement}).encode()
        return _result(json.loads(self._request("POST", "/api/v1/sql", body, content_type="application/json")))

    def records(self, name: str, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Named query ``name``'s rows as dicts: the query-runner shape the drift report takes."""
        result = self.query(name, **params)
        if result.truncated:
            raise ApiError(f"the answer of {name!r} was cut at {len(result.rows)} rows (the server's row limit): "
                           "narrow the window")
        return result.records()

    def drift_report(self, model: str, version: str | None = None, cohort: str | Mapping[str, str] | None = None,
                     window: str | None = None, format: str = "html") -> bytes:
        """The drift report of ``model`` as served: a self-contained HTML file, or its JSON twin (``format="json"``).

        ``cohort`` is ``"site=atl-factory-2"`` or ``{"site": "atl-factory-2"}``; ``window`` ``1h``, ``1d`` (the
        default) or ``START..END`` (RFC 3339). An unknown model is an :class:`ApiError` with status 404.
        """
        if format not in ("html", "json"):
            raise ValueError(f"format must be html or json, not {format!r}")
        if isinstance(cohort, Mapping):
            if len(cohort) != 1:
                raise ValueError("a cohort is one dimension and value, e.g. {'site': 'atl-factory-2'}")
            cohort = "{}={}".format(*next(iter(cohort.items())))
        params = {"model": model, "version": version, "cohort": cohort, "window": window, "format": format}
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return self._request("GET", f"/api/v1/reports/drift?{query}",
                             accept="text/html" if format == "html" else "application/json")

    def _query_path(self, name: str, params: dict[str, Any]) -> str:
        query = urllib.parse.urlencode({k: _text(v) for k, v in params.items() if v is not None})
        return f"/api/v1/query/{urllib.parse.quote(name, safe='')}" + (f"?{query}" if query else "")

    def _request(self, method: str, path: str, body: bytes | None = None, *, accept: str = "application/json",
                 content_type: str | None = None) -> bytes:
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(f"cannot reach the read API at {self.url}: {reason}") from None


def _text(value: Any) -> str:
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text if getattr(value, "tzinfo", None) else text + "Z"
    return str(value)


def _result(answer: dict) -> QueryResult:
    return QueryResult(answer["columns"], answer["rows"], bool(answer.get("truncated")))


def _http_error(exc: urllib.error.HTTPError) -> ApiError:
    try:
        message = json.loads(exc.read() or b"{}").get("error") or exc.reason
    except ValueError:
        message = exc.reason
    retry = exc.headers.get("Retry-After")
    return ApiError(f"{message} (HTTP {exc.code})", exc.code, float(retry) if retry and retry.isdigit() else None)
