"""Typed configuration for the collector, loaded from YAML or built in code.

The file has the shape of the OpenTelemetry Collector's::

    receivers:
      otlp:
        protocols:
          http: {endpoint: 127.0.0.1:4318}
          grpc: {endpoint: 127.0.0.1:4317}
        auth: {bearer_tokens_file: /etc/fleetwatch/tokens}
        tls: {cert_file: gw.crt, key_file: gw.key}
    processors:
      memory_limiter: {limit_mib: 256}
      batch: {send_batch_size: 65536, timeout: 50ms}
    exporters:
      duckdb: {path: fleetwatch.duckdb}
    service:
      pipelines:
        traces: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [duckdb]}
        metrics: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [duckdb]}
        logs: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [duckdb]}

Every key is optional; :func:`default_config` gives the defaults documented
in docs/configuration.md. :func:`load_config` rejects unknown keys and bad
values at start-up with a :class:`ConfigError` that names the key path, so a
typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any, key: str) -> float:
    """Return seconds for ``200ms``, ``5s``, ``2m``, ``1h`` or ``3d``.

    A bare number other than 0 is refused: ``timeout: 3`` could mean 3 ms
    or 3 s, and reading it either way silently would be a guess.
    """
    bare_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if bare_number or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        value = value.strip() if isinstance(value, str) else value
        if float(value) == 0:
            return 0.0
        raise ConfigError(f"{key}: a duration needs a unit, e.g. {value}s or {value}ms (got the bare number {value!r})")
    match = _DURATION.match(str(value))
    if not match:
        raise ConfigError(f"{key}: expected a duration such as 200ms, 5s or 1h, got {value!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_endpoint(value: str, key: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:4317`` for IPv6); port 0 asks the OS for a free one."""
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ConfigError(f"{key}: expected host:port, got {value!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port must be 0..65535, got {port}")
    host = host.strip("[]") or "127.0.0.1"
    return host, port


@dataclass
class HttpReceiverConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4318"
    # Caps both the body on the wire and the body after decompression, so a
    # small gzip bomb cannot expand past it.
    max_request_body_size_mib: float = 32.0

    def validate(self, key: str) -> None:
        parse_endpoint(self.endpoint, f"{key}.endpoint")
        if self.max_request_body_size_mib <= 0:
            raise ConfigError(f"{key}.max_request_body_size_mib: must be positive")


@dataclass
class GrpcReceiverConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4317"
    # gRPC applies this to the decompressed message.
    max_recv_msg_size_mib: float = 32.0

    def validate(self, key: str) -> None:
        parse_endpoint(self.endpoint, f"{key}.endpoint")
        if self.max_recv_msg_size_mib <= 0:
            raise ConfigError(f"{key}.max_recv_msg_size_mib: must be positive")


@dataclass
class AuthConfig:
    """Bearer tokens accepted by both receivers; empty means no authentication.

    Tokens come from ``bearer_tokens`` (inline, for tests), a file with one
    token per line, or an environment variable holding comma-separated tokens.
    """

    bearer_tokens: list[str] = field(default_factory=list)
    bearer_tokens_file: str | None = None
    bearer_tokens_env: str | None = None

    def validate(self, key: str) -> None:
        if self.bearer_tokens_file and not Path(self.bearer_tokens_file).is_file():
            raise ConfigError(f"{key}.bearer_tokens_file: no such file {self.bearer_tokens_file!r}")
        if self.bearer_tokens_env and self.bearer_tokens_env not in os.environ:
            raise ConfigError(f"{key}.bearer_tokens_env: environment variable {self.bearer_tokens_env} is not set")
        for token in self.tokens():
            if any(ch.isspace() for ch in token):
                raise ConfigError(f"{key}: a bearer token must not contain white space")

    def tokens(self) -> list[str]:
        tokens = list(self.bearer_tokens)
        if self.bearer_tokens_file and Path(self.bearer_tokens_file).is_file():
            lines = Path(self.bearer_tokens_file).read_text().splitlines()
            tokens += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if self.bearer_tokens_env:
            tokens += [t.strip() for t in os.environ.get(self.bearer_tokens_env, "").split(",") if t.strip()]
        return tokens


@dataclass
class TlsConfig:
    cert_file: str | None = None
    key_file: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def validate(self, key: str) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(f"{key}: cert_file and key_file must be given together")
        for name in ("cert_file", "key_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"{key}.{name}: no such file {path!r}")


@dataclass
class ProtocolsConfig:
    http: HttpReceiverConfig = field(default_factory=HttpReceiverConfig)
    grpc: GrpcReceiverConfig = field(default_factory=GrpcReceiverConfig)


@dataclass
class OtlpReceiverConfig:
    protocols: ProtocolsConfig = field(default_factory=ProtocolsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Take received_at and gateway_id from a forwarding gateway's
    # X-Fleetwatch-Received-At / X-Fleetwatch-Gateway-Id headers, so that
    # freshness and clock skew are measured where the device connected.
    trust_gateway_headers: bool = True

    def validate(self, key: str) -> None:
        self.protocols.http.validate(f"{key}.protocols.http")
        self.protocols.grpc.validate(f"{key}.protocols.grpc")
        if not (self.protocols.http.enabled or self.protocols.grpc.enabled):
            raise ConfigError(f"{key}.protocols: enable at least one of http, grpc")
        self.auth.validate(f"{key}.auth")
        self.tls.validate(f"{key}.tls")


@dataclass
class MemoryLimiterConfig:
    """One budget for every byte queued in the process (decoded, not yet durable).

    A request that would take the queue past ``limit_mib`` is refused with a
    retryable answer (HTTP 503 + Retry-After, gRPC UNAVAILABLE + RetryInfo)
    so SDKs back off instead of the gateway running out of memory.
    """

    limit_mib: float = 256.0
    retry_after: float = 5.0

    def validate(self, key: str) -> None:
        if self.limit_mib <= 0:
            raise ConfigError(f"{key}.limit_mib: must be positive")
        if self.retry_after < 1:
            raise ConfigError(f"{key}.retry_after: must be at least 1s (Retry-After has whole seconds)")


@dataclass
class BatchConfig:
    """Group commit: flush when ``send_batch_size`` rows are pending or ``timeout`` after the first."""

    send_batch_size: int = 65536
    # Requests wait for their commit, so this is added acknowledgement latency
    # at low load; under load batches grow while the writer is busy anyway.
    timeout: float = 0.05

    def validate(self, key: str) -> None:
        if self.send_batch_size < 1:
            raise ConfigError(f"{key}.send_batch_size: must be at least 1")
        if self.timeout <= 0:
            raise ConfigError(f"{key}.timeout: must be positive")


#: DuckDB settings the exporter sets from its own keys
_MANAGED_DUCKDB_SETTINGS = {"memory_limit": "memory_limit_mib", "max_memory": "memory_limit_mib",
                            "threads": "threads", "checkpoint_threshold": "checkpoint_threshold_mib",
                            "wal_autocheckpoint": "checkpoint_threshold_mib"}
#: DuckDB settings that would let it download or load extensions: gateways make no unconfigured connections
_NETWORK_DUCKDB_SETTINGS = ("autoinstall_known_extensions", "autoload_known_extensions",
                            "custom_extension_repository", "autoinstall_extension_repository")


@dataclass
class DuckDBExporterConfig:
    path: str = "fleetwatch.duckdb"
    # A request re-sent within this window (clients retry when unsure) is
    # recognised by its content digest and not written twice.
    dedup_window: float = 24 * 3600.0
    dedup_max_entries: int = 2_000_000
    # DuckDB holds the rows written since the last checkpoint (at most about
    # a row group per table: ~82 MiB for the ingest benchmark's spans) plus a
    # cache of written blocks that the writer never reads back. Wider rows
    # spill to a temporary file beyond this limit, which costs CPU (measured
    # +20 % at 64 MiB) but no data.
    memory_limit_mib: int = 100
    # The writer checkpoints when a table's new rows fill a row group
    # (collector.store.checkpoints); this write-ahead-log size forces one sooner,
    # for rows so wide that a row group's log would be larger.
    checkpoint_threshold_mib: int = 256
    # A quiet gateway fills row groups slowly; without these its write-ahead
    # log would hold every small commit until then (and be replayed at the
    # next start). Checkpoint after this long without writes...
    checkpoint_idle: float = 30.0
    # ...and when the oldest write not yet checkpointed is this old.
    checkpoint_max_interval: float = 60.0
    # Appends gain nothing from a second DuckDB thread (measured) and each
    # thread keeps its own buffers.
    threads: int = 1
    # A device whose freshest telemetry arrives more than this far ahead of
    # or behind the gateway's clock is taken to have a skewed clock.
    clock_skew_threshold: float = 120.0
    # Further DuckDB configuration options, passed to duckdb.connect as given
    # (e.g. temp_directory); DuckDB rejects unknown ones at start-up.
    settings: dict = field(default_factory=dict)

    def validate(self, key: str) -> None:
        if not self.path:
            raise ConfigError(f"{key}.path: must not be empty")
        parent = Path(self.path).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"{key}.path: directory {str(parent)!r} does not exist")
        if self.dedup_max_entries < 0:
            raise ConfigError(f"{key}.dedup_max_entries: must not be negative")
        if self.memory_limit_mib < 64:
            raise ConfigError(f"{key}.memory_limit_mib: must be at least 64")
        if self.threads < 1:
            raise ConfigError(f"{key}.threads: must be at least 1")
        if self.checkpoint_threshold_mib < 1:
            raise ConfigError(f"{key}.checkpoint_threshold_mib: must be at least 1")
        for name in ("checkpoint_idle", "checkpoint_max_interval"):
            if getattr(self, name) < 0.1:
                raise ConfigError(f"{key}.{name}: must be at least 100ms, got {getattr(self, name)}s")
        for name, own_key in _MANAGED_DUCKDB_SETTINGS.items():
            if name in self.settings:
                raise ConfigError(f"{key}.settings.{name}: set {key}.{own_key} instead")
        for name in _NETWORK_DUCKDB_SETTINGS:
            if name in self.settings:
                raise ConfigError(f"{key}.settings.{name}: not allowed; the collector never downloads "
                                  "or auto-loads DuckDB extensions")


@dataclass
class RetryConfig:
    """Exponential backoff with jitter; ``max_elapsed_time`` 0 retries forever (edge outages last days)."""

    initial_interval: float = 1.0
    max_interval: float = 60.0
    multiplier: float = 1.5
    jitter: float = 0.5
    max_elapsed_time: float = 0.0

    def validate(self, key: str) -> None:
        if self.initial_interval <= 0 or self.max_interval < self.initial_interval:
            raise ConfigError(f"{key}: need 0 < initial_interval <= max_interval")
        if self.multiplier < 1:
            raise ConfigError(f"{key}.multiplier: must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"{key}.jitter: must be between 0 and 1")


@dataclass
class QueueConfig:
    directory: str = "fleetwatch-queue"
    max_size_mib: float = 2048.0
    fsync: bool = True

    def validate(self, key: str) -> None:
        if self.max_size_mib <= 0:
            raise ConfigError(f"{key}.max_size_mib: must be positive")
        parent = Path(self.directory).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"{key}.directory: parent directory {str(parent)!r} does not exist")


@dataclass
class OtlpExporterConfig:
    """Forward upstream over OTLP/HTTP protobuf through a persistent queue (see docs/forwarding.md)."""

    endpoint: str = ""
    compression: str = "zstd"
    headers: dict = field(default_factory=dict)
    timeout: float = 30.0
    # Device requests are merged into upstream requests of up to this many
    # (uncompressed) bytes: bigger requests compress better.
    max_request_size_mib: float = 4.0
    queue: QueueConfig = field(default_factory=QueueConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    dead_letter_file: str = "fleetwatch-dead-letter.jsonl"
    ca_file: str | None = None

    def validate(self, key: str) -> None:
        if not self.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"{key}.endpoint: an http:// or https:// URL of an OTLP/HTTP receiver is required")
        if self.compression not in ("zstd", "gzip", "none"):
            raise ConfigError(f"{key}.compression: one of zstd, gzip, none; got {self.compression!r}")
        if self.timeout <= 0:
            raise ConfigError(f"{key}.timeout: must be positive")
        if self.max_request_size_mib <= 0:
            raise ConfigError(f"{key}.max_request_size_mib: must be positive")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ConfigError(f"{key}.headers: a mapping of header names to string values")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise ConfigError(f"{key}.ca_file: no such file {self.ca_file!r}")
        self.queue.validate(f"{key}.queue")
        self.retry.validate(f"{key}.retry")


# Every pipeline's processors: one memory budget and one batcher serve all signals.
_PROCESSORS = ("memory_limiter", "batch")


@dataclass
class PipelineConfig:
    receivers: list[str] = field(default_factory=lambda: ["otlp"])
    processors: list[str] = field(default_factory=lambda: list(_PROCESSORS))
    exporters: list[str] = field(default_factory=lambda: ["duckdb"])


@dataclass
class LogsConfig:
    level: str = "info"

    def validate(self, key: str) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"{key}.level: one of debug, info, warning, error; got {self.level!r}")


@dataclass
class TelemetryConfig:
    logs: LogsConfig = field(default_factory=LogsConfig)


@dataclass
class ServiceConfig:
    gateway_id: str = field(default_factory=socket.gethostname)
    pipelines: dict[str, PipelineConfig] = field(
        default_factory=lambda: {signal: PipelineConfig() for signal in ("traces", "metrics", "logs")}
    )
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    shutdown_timeout: float = 30.0


@dataclass
class ReceiversConfig:
    otlp: OtlpReceiverConfig = field(default_factory=OtlpReceiverConfig)


@dataclass
class ProcessorsConfig:
    memory_limiter: MemoryLimiterConfig = field(default_factory=MemoryLimiterConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)


@dataclass
class ExportersConfig:
    duckdb: DuckDBExporterConfig = field(default_factory=DuckDBExporterConfig)
    otlp: OtlpExporterConfig | None = None


_KNOWN_SIGNALS = ("traces", "metrics", "logs")


@dataclass
class CollectorConfig:
    receivers: ReceiversConfig = field(default_factory=ReceiversConfig)
    processors: ProcessorsConfig = field(default_factory=ProcessorsConfig)
    exporters: ExportersConfig = field(default_factory=ExportersConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    # Top-level sections of the components that compose this process with the
    # collector (the read API's ``api``, ``analytics``), by name; see register_section.
    sections: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """The registered section ``name``: as configured, its defaults when the file leaves it out
        and the section is ``always`` present, or None."""
        if name not in self.sections and _SECTIONS.get(name, (None, False))[1]:
            self.sections[name] = _SECTIONS[name][0]()
        return self.sections.get(name)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad key."""
        for name, value in self.sections.items():
            value.validate(name)
        self.receivers.otlp.validate("receivers.otlp")
        self.processors.memory_limiter.validate("processors.memory_limiter")
        self.processors.batch.validate("processors.batch")
        if "duckdb" in self.exporter_names():
            self.exporters.duckdb.validate("exporters.duckdb")
        if self.exporters.otlp is not None:
            self.exporters.otlp.validate("exporters.otlp")
        self.service.telemetry.logs.validate("service.telemetry.logs")
        if not self.service.gateway_id:
            raise ConfigError("service.gateway_id: must not be empty")
        if not self.service.pipelines:
            raise ConfigError("service.pipelines: define at least one pipeline")
        components = {
            "receivers": {f.name for f in dataclasses.fields(ReceiversConfig)},
            "processors": {f.name for f in dataclasses.fields(ProcessorsConfig)},
            "exporters": {f.name for f in dataclasses.fields(ExportersConfig)},
        }
        for name, pipeline in self.service.pipelines.items():
            key = f"service.pipelines.{name}"
            if name.split("/")[0] not in _KNOWN_SIGNALS:
                raise ConfigError(f"{key}: pipeline type must be one of {', '.join(_KNOWN_SIGNALS)}")
            for kind, known in components.items():
                listed = getattr(pipeline, kind)
                if kind != "processors" and not listed:
                    raise ConfigError(f"{key}.{kind}: list at least one")
                for component in listed:
                    if component not in known:
                        raise ConfigError(f"{key}.{kind}: unknown component {component!r}; known: {sorted(known)}")
                    if kind == "exporters" and component == "otlp" and self.exporters.otlp is None:
                        raise ConfigError(f"{key}.exporters: 'otlp' is listed but exporters.otlp is not configured")
            if list(pipeline.processors) != list(_PROCESSORS):
                # One memory budget and one group-commit batcher serve every
                # signal: a pipeline cannot leave either out or reorder them.
                raise ConfigError(f"{key}.processors: must be {list(_PROCESSORS)} (the memory limiter and the "
                                  f"batcher apply to every pipeline); got {list(pipeline.processors)}")
        if len({frozenset(p.exporters) for p in self.service.pipelines.values()}) > 1:
            raise ConfigError("service.pipelines: every pipeline must list the same exporters (one write path)")

    def signals(self) -> set[str]:
        return {name.split("/")[0] for name in self.service.pipelines}

    def exporter_names(self) -> set[str]:
        """The exporters the pipelines write to (a request is acknowledged once all hold it)."""
        return {e for p in self.service.pipelines.values() for e in p.exporters}


# Fields read as durations (seconds out, a unit required in). A section class
# registered from another layer names its own in a ``DURATIONS`` class attribute.
_DURATION_FIELDS = {"timeout", "retry_after", "dedup_window", "shutdown_timeout", "initial_interval",
                    "max_interval", "max_elapsed_time", "clock_skew_threshold", "checkpoint_idle",
                    "checkpoint_max_interval"}


# name -> (section class, present with its defaults when the file leaves it out)
_SECTIONS: dict[str, tuple[type, bool]] = {}


def register_section(name: str, cls: type, *, always: bool = False) -> None:
    """Let the YAML have a top-level section ``name`` built as dataclass ``cls`` (which has ``validate(key)``).

    Components layered on the collector (the read API, analytics) own their
    sections and register them; the collector knows nothing of them.
    """
    if not dataclasses.is_dataclass(cls) or not hasattr(cls, "validate"):
        raise TypeError(f"section {name!r}: {cls!r} must be a dataclass with validate(key)")
    if name in {f.name for f in dataclasses.fields(CollectorConfig)}:
        raise ValueError(f"section {name!r} is the collector's own")
    _SECTIONS[name] = (cls, always)


def _build(cls: type, data: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by path."""
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"{key or 'config'}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for name, value in data.items():
        path = f"{key}.{name}" if key else str(name)
        if cls is CollectorConfig and name in _SECTIONS:
            sections[name] = _build(_SECTIONS[name][0], value, path)
            continue
        if name not in fields or name == "sections":
            known = sorted(set(fields) - {"sections"} | (set(_SECTIONS) if cls is CollectorConfig else set()))
            raise ConfigError(f"{path}: unknown key; expected one of {known}")
        kwargs[name] = _convert(fields[name], hints[name], value, path,
                                is_duration=name in _DURATION_FIELDS or name in getattr(cls, "DURATIONS", ()))
    if sections:
        kwargs["sections"] = sections
    return cls(**kwargs)


def _convert(f: dataclasses.Field, hint: Any, value: Any, path: str, *, is_duration: bool) -> Any:
    annotation = str(f.type)
    if is_duration:
        return parse_duration(value, path)
    if f.name == "pipelines":
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of pipeline name to pipeline")
        return {name: _build(PipelineConfig, spec, f"{path}.{name}") for name, spec in value.items()}
    if annotation == "dict":
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping")
        return {str(k): str(v) for k, v in value.items()}
    if typing.get_origin(hint) is list and dataclasses.is_dataclass(item := typing.get_args(hint)[0]):
        # A list of mappings (alerting.receivers), each built and named by its index.
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list of mappings")
        return [_build(item, entry, f"{path}[{index}]") for index, entry in enumerate(value)]
    # Nested sections, optional ones included (OtlpExporterConfig | None),
    # resolved from the class's own annotations wherever it is defined.
    section = next((t for t in typing.get_args(hint) or (hint,) if dataclasses.is_dataclass(t)), None)
    if section is not None:
        return _build(section, value, path)
    if annotation.startswith("list"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: expected a list of strings")
        return value
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if annotation in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if annotation == "int" and not float(value).is_integer():
            raise ConfigError(f"{path}: expected a whole number, got {value!r}")
        return int(value) if annotation == "int" else float(value)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def default_config() -> CollectorConfig:
    return CollectorConfig()


def config_from_dict(data: dict[str, Any] | None) -> CollectorConfig:
    """Build and validate a config from a parsed YAML mapping."""
    config = _build(CollectorConfig, data or {}, "")
    config.validate()
    return config


def load_config(path: str | os.PathLike[str] | None) -> CollectorConfig:
    """Load and validate a YAML config file; ``None`` gives the validated defaults."""
    if path is None:
        return config_from_dict({})
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return config_from_dict(data)
