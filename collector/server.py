"""The collector process: receivers → ingest pipeline → DuckDB, with clean shutdown.

Usage::

    config = load_config("gateway.yaml")        # or default_config()
    exit_code = run(config)                     # blocks until SIGTERM / SIGINT

or, inside an existing event loop (tests, the analytics process)::

    collector = Collector(config)
    await collector.start()
    ...
    await collector.stop()

Start-up fails fast (bad config, a port in use, a database owned by another
process). On SIGTERM or SIGINT the collector stops accepting, lets in-flight
requests finish and commit, checkpoints and closes the database, and exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from typing import Protocol

from collector.receivers.auth import BearerAuth, server_ssl_context
from collector.config import CollectorConfig, parse_endpoint
from collector.store.duckdb_exporter import DuckDBExporter, collector_store
from collector.processing.exporters import FanOut
from collector.logs import configure_logging
from collector.processing.pipeline import Ingestor
from collector.receivers.otlp_grpc import GrpcReceiver
from collector.receivers.otlp_http import HttpReceiver
from collector.selfmetrics import CollectorMetrics
from collector.store.database import Store
from collector.store.migrations import Migrations
from collector.decoding.trace_decode import SPEEDUPS_AVAILABLE

log = logging.getLogger("fleetwatch.collector")


def build_exporters(config: CollectorConfig, metrics: CollectorMetrics, store: Store | None = None) -> list:
    """The exporters the pipelines name, in a fixed order (local copy first); ``store`` for the DuckDB one."""
    names = config.exporter_names()
    exporters: list = []
    if "duckdb" in names:
        exporters.append(DuckDBExporter(store or collector_store(config.exporters.duckdb, metrics),
                                        config.exporters.duckdb, metrics))
    if "otlp" in names:
        from collector.forwarding.otlp_forwarder import ForwardingExporter

        assert config.exporters.otlp is not None  # validated
        exporters.append(ForwardingExporter(config.exporters.otlp, metrics, config.service.gateway_id))
    return exporters


def _database_files_not_yet_there(config: CollectorConfig) -> list[str]:
    """The DuckDB file and its log, where they do not exist yet: a failed start removes what it created."""
    if "duckdb" not in config.exporter_names():
        return []
    path = os.path.expanduser(config.exporters.duckdb.path)
    return [name for name in (path, path + ".wal") if not os.path.lexists(name)]


def _remove_files(paths: list[str]) -> None:
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def check_ports_free(config: CollectorConfig, extra: Sequence[tuple[str, str, int]] = ()) -> None:
    """Raise OSError naming the first enabled listener whose fixed port cannot be bound now.

    ``extra`` adds (what, host, port) listeners of extensions (the read API).
    ``demo`` calls this before its long sample load, so a port in use is
    reported in a second rather than after a minute of loading.
    """
    protocols = config.receivers.otlp.protocols
    listeners = [(name, *parse_endpoint(receiver.endpoint, "endpoint"))
                 for name, receiver in (("OTLP/HTTP", protocols.http), ("OTLP/gRPC", protocols.grpc))
                 if receiver.enabled]
    for name, host, port in [*listeners, *extra]:
        if port == 0:
            continue
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the receivers bind: a port left in TIME_WAIT by a previous run is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise OSError(f"cannot listen on {host}:{port} for {name}: {exc.strerror}") from None


class Collector:
    """One process that receives OTLP and owns its exporters (a DuckDB file, a forwarding queue).

    A port in use is found before any exporter creates a file, and a start
    that fails later removes the database file it created, so a failed
    ``serve`` leaves nothing behind.
    """

    def __init__(self, config: CollectorConfig, metrics: CollectorMetrics | None = None, *,
                 migrations: Sequence[Migrations] = (), readers: int = 2, read_queue_limit: int = 8,
                 extra_ports: Sequence[tuple[str, str, int]] = ()) -> None:
        self.config = config
        self.extra_ports = list(extra_ports)
        self.metrics = metrics or CollectorMetrics()
        # The DuckDB file's owner, shared with whatever composes this process
        # (the read API, analytics jobs: ``migrations`` adds their schemas).
        self.store: Store | None = None
        if "duckdb" in config.exporter_names():
            self.store = collector_store(config.exporters.duckdb, self.metrics, migrations,
                                         readers=readers, queue_limit=read_queue_limit)
        self.exporter = FanOut(build_exporters(config, self.metrics, self.store),
                               config.exporters.duckdb.dedup_window, config.exporters.duckdb.dedup_max_entries)
        self.metrics.registry.gauge_callback(
            "fleetwatch_exporter_partly_held_requests",
            "Requests one exporter made durable and another did not (their re-send goes only to the others).",
            lambda: len(self.exporter.partly_held))
        self.ingestor: Ingestor | None = None
        self.http: HttpReceiver | None = None
        self.grpc: GrpcReceiver | None = None
        self.state = "starting"
        self._started_at = time.time()

    def health(self) -> tuple[bool, dict]:
        ready = self.state == "running" and self.exporter.healthy
        return ready, {
            "state": self.state,
            "database_writable": self.exporter.healthy,
            "uptime_seconds": round(time.time() - self._started_at, 1),
        }

    async def start(self, *, ready: bool = True) -> None:
        """Start exporters and receivers; ``ready=False`` leaves /healthz not ready until :meth:`mark_ready`
        (``serve`` starts its extensions first, so ready means every listener answers)."""
        otlp = self.config.receivers.otlp
        check_ports_free(self.config, self.extra_ports)  # before any exporter creates its file or queue directory
        new_files = _database_files_not_yet_there(self.config)
        try:
            self.exporter.start()
        except BaseException:
            _remove_files(new_files)
            raise
        try:
            self.ingestor = Ingestor(self.config, self.metrics, self.exporter)
            auth = BearerAuth(otlp.auth.tokens())
            if otlp.protocols.http.enabled:
                self.http = HttpReceiver(
                    otlp.protocols.http,
                    self.ingestor,
                    self.metrics,
                    auth,
                    ssl_context=server_ssl_context(otlp.tls),
                    health=self.health,
                    shutdown_timeout=self.config.service.shutdown_timeout,
                    trust_gateway_headers=otlp.trust_gateway_headers,
                )
                await self.http.start()
            if otlp.protocols.grpc.enabled:
                self.grpc = GrpcReceiver(otlp.protocols.grpc, self.ingestor, self.metrics, auth, otlp.tls)
                await self.grpc.start()
        except BaseException:
            await self._stop_receivers()
            self.exporter.close()
            _remove_files(new_files)
            raise
        if ready:
            self.mark_ready()

    def mark_ready(self) -> None:
        self.state = "running"
        log.info(
            "collector ready",
            extra={
                "http_port": self.http.port if self.http else None,
                "grpc_port": self.grpc.port if self.grpc else None,
                "exporters": sorted(self.config.exporter_names()),
                "gateway_id": self.config.service.gateway_id,
                "auth": bool(self.config.receivers.otlp.auth.tokens()),
                "c_decoder": SPEEDUPS_AVAILABLE,
            },
        )

    async def _stop_receivers(self) -> None:
        grace = self.config.service.shutdown_timeout
        tasks = []
        if self.http:
            tasks.append(self.http.stop())
        if self.grpc:
            tasks.append(self.grpc.stop(grace))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Stop accepting, commit what was accepted, close the database."""
        if self.state in ("stopping", "stopped"):
            return
        self.state = "stopping"
        log.info("shutting down: no new requests, committing what was accepted")
        await self._stop_receivers()
        if self.ingestor is not None:
            await self.ingestor.drain()
        await asyncio.get_running_loop().run_in_executor(None, self.exporter.close, self.config.service.shutdown_timeout)
        self.state = "stopped"
        log.info("shut down cleanly", extra={"rows_written": self.metrics.rows_written.total()})


class Extension(Protocol):
    """Something that runs in the collector's process beside it (the read API, analytics jobs).

    The layers above the collector compose it with their extensions; the
    collector knows only this shape. ``migrations`` are added to the store's
    schemas before it opens; ``ports()`` are checked with the receivers' before
    any file is created; ``start`` runs once the collector is serving and
    ``stop`` before it stops, in reverse order.
    """

    migrations: Sequence[Migrations]

    def ports(self) -> list[tuple[str, str, int]]: ...  # (what, host, port)

    async def start(self, collector: Collector) -> None: ...

    async def stop(self) -> None: ...


async def serve(config: CollectorConfig, metrics: CollectorMetrics | None = None,
                extensions: Sequence[Extension] = (), *, readers: int = 2, read_queue_limit: int = 8) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    collector = Collector(config, metrics, migrations=[m for e in extensions for m in e.migrations],
                          readers=readers, read_queue_limit=read_queue_limit,
                          extra_ports=[p for e in extensions for p in e.ports()])
    await collector.start(ready=False)
    started: list[Extension] = []
    try:
        for extension in extensions:
            await extension.start(collector)
            started.append(extension)
        collector.mark_ready()
        await stop.wait()
    finally:
        for extension in reversed(started):
            try:
                await extension.stop()
            except Exception:  # stopping the rest and the collector matters more
                log.exception("stopping %s failed", type(extension).__name__)
        await collector.stop()


def _raise_open_file_limit() -> None:
    """A thousand devices reconnecting at once need more sockets than the usual soft limit of 1024."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ImportError, ValueError, OSError) as exc:
        log.warning("could not raise the open-file limit: %s", exc)


class _KeepOut(importlib.abc.MetaPathFinder):
    """Refuses to import the named packages in this process."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is kept out of the collector process", name=fullname)
        return None


def keep_pandas_out() -> None:
    """Stop DuckDB and pyarrow from importing pandas into the collector.

    Both import pandas, when it happens to be installed, just to check
    whether an object is a DataFrame: about 50 MB of resident memory for
    nothing. The collector never hands them a DataFrame, and a gateway
    install (the collector's own dependencies) has no pandas at all; this
    makes every install behave like that one.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _KeepOut) for f in sys.meta_path):
        sys.meta_path.insert(0, _KeepOut(("pandas",)))


def _use_system_allocator_for_arrow() -> None:
    """Arrow buffers live for one batch; with malloc they are returned by the
    writer's malloc_trim, whereas Arrow's default pool keeps them (measured:
    about 20 MB lower peak RSS on the ingest benchmark)."""
    import pyarrow

    pyarrow.set_memory_pool(pyarrow.system_memory_pool())


def run(config: CollectorConfig, metrics: CollectorMetrics | None = None, extensions: Sequence[Extension] = (),
        **store_options) -> int:
    """Serve until SIGTERM / SIGINT; ``metrics`` carries counts from earlier work in this process (demo's load)."""
    configure_logging(config.service.telemetry.logs.level)
    _raise_open_file_limit()
    keep_pandas_out()
    _use_system_allocator_for_arrow()
    asyncio.run(serve(config, metrics, extensions, **store_options))
    return 0
