"""What a user can get wrong on the command line gets one line, no traceback, and leaves no file behind.

Real subprocesses of the CLI, real files (an empty one, a directory, a
SQLite database made with the standard library) and real sockets.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collector.config import ConfigError, config_from_dict
from collector.store.files import NotADatabaseError, open_database
from collector.request_log import RequestLogWriter
from bench.harness import free_port
from tests.otlp_requests import trace_request


def fleetwatch(*args: str, timeout: float = 120, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(prefix or []), sys.executable, "-m", "fleetwatch.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def sqlite_file(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE readings (x)")
    con.commit()
    con.close()
    return path


def small_log(path: Path) -> Path:
    with RequestLogWriter(path) as log:
        log.append("traces", 1_767_225_600_000_000_000, trace_request(5)[0])
    return path


def foreign(kind: str, tmp_path: Path) -> Path:
    path = tmp_path / "fw.duckdb"
    if kind == "empty file":
        path.touch()
    elif kind == "directory":
        path.mkdir()
    else:
        sqlite_file(path)
    return path


FOREIGN = {"empty file": "is an empty file", "directory": "is a directory, not a DuckDB database file",
           "SQLite file": "is a SQLite database, not a DuckDB database file"}


@pytest.mark.parametrize("kind", FOREIGN)
@pytest.mark.parametrize("verb", ["serve", "ingest"])
def test_a_db_that_is_not_duckdb_gets_one_line(tmp_path, kind, verb):
    db = foreign(kind, tmp_path)
    log = small_log(tmp_path / "x.otlp.zst")
    before = sorted(tmp_path.rglob("*"))
    args = ["--http-port", "0", "--grpc-port", "0", "--api-port", "0"] if verb == "serve" else [str(log)]
    result = fleetwatch(verb, "--db", str(db), *args)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"fleetwatch: {db} {FOREIGN[kind]}"), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no .wal, nothing created


def _ptrace_works() -> bool:
    if shutil.which("strace") is None:
        return False
    return subprocess.run(["strace", "-o", "/dev/null", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _ptrace_works(), reason="needs strace (ptrace) to see connection attempts from C++ too")
@pytest.mark.parametrize("verb", ["serve", "ingest"])
def test_a_foreign_file_makes_no_connection_attempt(tmp_path, verb):
    """DuckDB tried to download its sqlite extension for a SQLite file given as --db (a DNS query went out).

    strace sees every connect() of the process and its threads, Python's or
    DuckDB's own HTTP client alike; a name lookup shows as a connect to the
    resolver (port 53) or to nscd.
    """
    db = sqlite_file(tmp_path / "site.db")
    trace = tmp_path / "connect.trace"
    args = ["--http-port", "0", "--grpc-port", "0", "--api-port", "0"] if verb == "serve" else [str(small_log(tmp_path / "x.otlp.zst"))]
    result = fleetwatch(verb, "--db", str(db), *args,
                        prefix=["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace)])
    assert result.returncode == 1, result.stderr
    attempts = [line for line in trace.read_text().splitlines()
                if "AF_INET" in line or "nscd" in line or "AF_NETLINK" in line]
    assert attempts == []


def test_every_connection_has_extension_autoload_and_autoinstall_off(tmp_path):
    con = open_database(str(tmp_path / "fw.duckdb"))
    try:
        settings = con.execute("SELECT current_setting('autoinstall_known_extensions'), "
                               "current_setting('autoload_known_extensions')").fetchone()
    finally:
        con.close()
    assert settings == (False, False)
    with pytest.raises(NotADatabaseError, match="SQLite"):
        open_database(str(sqlite_file(tmp_path / "site.db")), read_only=True)


def test_extension_downloads_cannot_be_configured_back_on():
    with pytest.raises(ConfigError, match="^exporters.duckdb.settings.autoinstall_known_extensions: not allowed"):
        config_from_dict({"exporters": {"duckdb": {"settings": {"autoinstall_known_extensions": True}}}})


def _listening_socket() -> socket.socket:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    return taken


@pytest.mark.parametrize("receiver", ["grpc", "http"])
def test_a_port_in_use_is_one_line_and_leaves_no_file(tmp_path, receiver):
    db = tmp_path / "fw.duckdb"
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        ports = {"http": free_port(), "grpc": free_port(), receiver: port}
        result = fleetwatch("serve", "--db", str(db), "--http-port", str(ports["http"]),
                            "--grpc-port", str(ports["grpc"]))
    assert result.returncode == 1
    name = {"grpc": "OTLP/gRPC", "http": "OTLP/HTTP"}[receiver]
    assert result.stderr.strip().splitlines() == [
        f"fleetwatch: cannot start: cannot listen on 127.0.0.1:{port} for {name}: Address already in use"]
    assert list(tmp_path.iterdir()) == []  # neither fw.duckdb nor fw.duckdb.wal


def test_a_port_in_use_creates_no_forwarding_queue_either(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "exporters": {"otlp": {"endpoint": "http://127.0.0.1:9/v1", "queue": {"directory": str(tmp_path / "queue")}}},
        "service": {"pipelines": {signal: {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                                           "exporters": ["duckdb", "otlp"]} for signal in ("traces", "metrics")}},
    }))
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        result = fleetwatch("serve", "--config", str(config), "--db", str(tmp_path / "fw.duckdb"),
                            "--http-port", str(port), "--grpc-port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fleetwatch: cannot start: cannot listen on 127.0.0.1:{port} for OTLP/HTTP: Address already in use"]
    assert list(tmp_path.iterdir()) == [config]


def test_a_start_that_fails_after_opening_the_database_removes_it(tmp_path):
    (tmp_path / "gw.crt").write_text("not a certificate\n")
    (tmp_path / "gw.key").write_text("not a key\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"receivers": {"otlp": {"tls": {"cert_file": str(tmp_path / "gw.crt"),
                                                                     "key_file": str(tmp_path / "gw.key")}}}}))
    before = sorted(tmp_path.iterdir())
    result = fleetwatch("serve", "--config", str(config), "--db", str(tmp_path / "fw.duckdb"),
                        "--http-port", "0", "--grpc-port", "0", "--api-port", "0")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"fleetwatch: cannot start: receivers.otlp.tls: cannot load the certificate "
                           f"{tmp_path / 'gw.crt'} with the key {tmp_path / 'gw.key'}"), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(tmp_path.iterdir()) == before  # the database the exporter had opened is gone again


def test_demo_checks_its_ports_before_the_long_load(tmp_path):
    db = tmp_path / "demo.duckdb"
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        result = fleetwatch("demo", "--db", str(db), "--http-port", str(free_port()), "--grpc-port", str(port),
                            timeout=600)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"fleetwatch: cannot start: cannot listen on 127.0.0.1:{port} for OTLP/gRPC: Address already in use"]
    assert list(tmp_path.iterdir()) == []


def test_serve_and_demo_help_say_what_they_do():
    serve = fleetwatch("serve", "--help").stdout
    assert "Receive OTLP from devices" in serve
    demo = fleetwatch("demo", "--help").stdout
    assert "sample_data/fleet-sample.otlp.zst" in demo and "fleetwatch-demo.duckdb" in demo
