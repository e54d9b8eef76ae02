"""A real collector subprocess on 127.0.0.1 for tests and benchmarks.

Usage::

    with CollectorProcess(tmp_path / "fw.duckdb") as collector:
        post(collector.http_url + "/v1/traces", body)
    # on exit: SIGTERM, exit code checked, the file is closed and readable
    rows = query(tmp_path / "fw.duckdb", "SELECT count(*) FROM spans")
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import yaml

from collector.store.files import open_database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CollectorProcess:
    """Starts ``fleetwatch serve`` as a subprocess and waits until /healthz is ready."""

    def __init__(self, db_path: Path | str, config: dict | None = None, extra_args: list[str] | None = None,
                 env: dict[str, str] | None = None, startup_timeout: float = 60.0,
                 http_port: int | None = None, grpc_port: int | None = None, api_port: int | None = None) -> None:
        self.db_path = Path(db_path)
        self.config = config
        self.extra_args = extra_args or []
        self.env = env
        self.startup_timeout = startup_timeout
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.api_port = api_port or free_port()
        self.proc: subprocess.Popen | None = None
        self.stderr_path = self.db_path.with_suffix(f".{self.http_port}.log")

    @property
    def http_url(self) -> str:
        scheme = "https" if self.config and self.config.get("receivers", {}).get("otlp", {}).get("tls") else "http"
        return f"{scheme}://127.0.0.1:{self.http_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> "CollectorProcess":
        args = [sys.executable, "-m", "fleetwatch.cli", "serve", "--db", str(self.db_path),
                "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                "--api-port", str(self.api_port)]
        if self.config is not None:
            config_path = self.db_path.with_suffix(f".{self.http_port}.yaml")
            config_path.write_text(yaml.safe_dump(self.config))
            args += ["--config", str(config_path)]
        env = {**os.environ, **(self.env or {})}
        self._stderr = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(args + self.extra_args, stdout=self._stderr, stderr=self._stderr, env=env)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}:\n{self.logs()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"collector did not become ready:\n{self.logs()}")

    def ready(self) -> bool:
        try:
            context = None
            if self.http_url.startswith("https"):
                import ssl

                context = ssl._create_unverified_context()
            with urllib.request.urlopen(self.http_url + "/healthz", timeout=2, context=context) as response:
                return json.loads(response.read())["ready"]
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def logs(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"collector did not stop within {timeout}s:\n{self.logs()}")
        self._stderr.close()
        return code

    def kill(self) -> None:
        """``kill -9``: no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        if hasattr(self, "_stderr"):
            self._stderr.close()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.http_url + "/metrics", timeout=5) as response:
            return response.read().decode()

    def __enter__(self) -> "CollectorProcess":
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        code = self.stop()
        if exc_type is None and code != 0:
            raise AssertionError(f"collector exited with {code}:\n{self.logs()}")


def wait_until(condition, timeout: float = 120.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def query(db_path: Path | str, sql: str, params: list | None = None) -> list[tuple]:
    """Open the (closed) file read-only and run one query."""
    con = open_database(str(db_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        pairs = dict(part.split("=", 1) for part in label_text.rstrip("}").split(",") if "=" in part)
        if all(pairs.get(k) == f'"{v}"' for k, v in labels.items()):
            total += float(value)
    return total


TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def post(port: int, path: str, body: bytes, *, content_type="application/x-protobuf", token: str | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    all_headers = {"Content-Type": content_type, **(headers or {})}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", path, body=body, headers=all_headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def grpc_call(endpoint: str, body: bytes, token: str | None = None, compression=None,
              method: str = TRACE_METHOD) -> bytes:
    with grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        metadata = (("authorization", f"Bearer {token}"),) if token else ()
        return call(body, metadata=metadata, timeout=30, compression=compression)


def gateway_config(tmp_path: Path, endpoint: str, **queue) -> dict:
    """A gateway that forwards everything to ``endpoint`` through a queue under ``tmp_path``."""
    return {
        "exporters": {
            "otlp": {
                "endpoint": endpoint,
                "queue": {"directory": str(tmp_path / "gw-queue"), **queue},
                "retry": {"initial_interval": "100ms", "max_interval": "1s"},
                "dead_letter_file": str(tmp_path / "dead-letter.jsonl"),
            }
        },
        "service": {
            "gateway_id": "gw-test",
            "pipelines": {
                "traces": {"receivers": ["otlp"], "exporters": ["otlp"]},
                "metrics": {"receivers": ["otlp"], "exporters": ["otlp"]},
            },
        },
    }


def queue_empty(gateway: CollectorProcess) -> bool:
    try:
        return metric_value(gateway.metrics_text(), "fleetwatch_forward_queue_items") == 0
    except OSError:
        return False


def jobs_caught_up(metrics_text: str, jobs: int = 8, within_seconds: float = 3 * 3600) -> bool:
    """Whether ``jobs`` analytics jobs report a watermark lag under ``within_seconds`` in /metrics text."""
    lags = [float(line.rsplit(" ", 1)[1]) for line in metrics_text.splitlines()
            if line.startswith("fleetwatch_job_watermark_lag_seconds{")]
    return len(lags) == jobs and all(lag < within_seconds for lag in lags)
