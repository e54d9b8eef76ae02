"""The collector's own health metrics, exposed in Prometheus text format.

Usage::

    registry = Registry()
    spans = registry.counter("fleetwatch_receiver_items_received_total",
                             "Spans and points received.", ["signal"])
    spans.inc(512, signal="traces")
    registry.gauge_callback("fleetwatch_queue_bytes", "Bytes queued.", lambda: queue.nbytes)
    text = registry.render()   # what GET /metrics answers

Counters only go up and are safe to increment from any thread (a lock per
metric; the hot path increments once per request, never once per item).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence

_LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(names: Sequence[str], values: Iterable[str], extra: str = "") -> str:
    parts = [f'{name}="{_escape(str(value))}"' for name, value in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _format_number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> _LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name}: expected labels {self.label_names}, got {tuple(labels)}")
        return tuple(str(labels[name]) for name in self.label_names)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    """A monotonically increasing count, optionally split by labels."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, label_names)
        self._values: dict[_LabelValues, float] = {}

    def inc(self, amount: float = 1, **labels: str) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: counters only go up, got {amount}")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def total(self) -> float:
        with self._lock:
            return sum(self._values.values())

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_format_labels(self.label_names, key)} {_format_number(value)}" for key, value in items
        ]


class Gauge(_Metric):
    """A value that is read when /metrics is scraped (``fn``) or set explicitly."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, fn: Callable[[], float] | None = None) -> None:
        super().__init__(name, help_text)
        self._fn = fn
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    def value(self) -> float:
        return float(self._fn()) if self._fn else self._value

    def render(self) -> list[str]:
        try:
            value = self.value()
        except Exception:  # a failing probe must not break the whole scrape
            value = float("nan")
        return self.header() + [f"{self.name} {_format_number(value) if not math.isnan(value) else 'NaN'}"]


class LabelledGauge(_Metric):
    """Gauges read at scrape time, one per label set: ``fn()`` returns {label values: value}."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label_names: Sequence[str],
                 fn: Callable[[], dict[_LabelValues, float]]) -> None:
        super().__init__(name, help_text, label_names)
        self._fn = fn

    def render(self) -> list[str]:
        try:
            values = self._fn()
        except Exception:  # a failing probe must not break the whole scrape
            values = {}
        return self.header() + [
            f"{self.name}{_format_labels(self.label_names, key)} "
            f"{_format_number(value) if not math.isnan(value) else 'NaN'}"
            for key, value in sorted(values.items())]


class Histogram(_Metric):
    """Cumulative-bucket histogram for latencies (seconds)."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        super().__init__(name, help_text)
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0

    def observe(self, value: float) -> None:
        with self._lock:
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[index] += 1
                    break
            self._sum += value
            self._count += 1

    def render(self) -> list[str]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        lines = self.header()
        cumulative = 0
        for bound, bucket_count in zip(self.buckets, counts):
            cumulative += bucket_count
            lines.append(f'{self.name}_bucket{{le="{_format_number(bound)}"}} {cumulative}')
        lines.append(f"{self.name}_sum {repr(total)}")
        lines.append(f"{self.name}_count {count}")
        return lines


class Registry:
    """Holds the process's metrics in registration order and renders them."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _register(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help_text: str, label_names: Sequence[str] = ()) -> Counter:
        return self._register(Counter(name, help_text, label_names))  # type: ignore[return-value]

    def gauge(self, name: str, help_text: str) -> Gauge:
        return self._register(Gauge(name, help_text))  # type: ignore[return-value]

    def gauge_callback(self, name: str, help_text: str, fn: Callable[[], float]) -> Gauge:
        return self._register(Gauge(name, help_text, fn))  # type: ignore[return-value]

    def gauge_callback_labelled(self, name: str, help_text: str, label_names: Sequence[str],
                                fn: Callable[[], dict[_LabelValues, float]]) -> LabelledGauge:
        return self._register(LabelledGauge(name, help_text, label_names, fn))  # type: ignore[return-value]

    def histogram(self, name: str, help_text: str, buckets: Sequence[float]) -> Histogram:
        return self._register(Histogram(name, help_text, buckets))  # type: ignore[return-value]

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())  # type: ignore[attr-defined]
        return "\n".join(lines) + "\n"


def resident_memory_bytes() -> float:
    """Current RSS from /proc (Linux); NaN elsewhere."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return float("nan")
    import os

    return float(pages * os.sysconf("SC_PAGE_SIZE"))


class CollectorMetrics:
    """Every metric the collector exports, in one place so names stay consistent."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.requests = r.counter(
            "fleetwatch_receiver_requests_total",
            "Export requests by receiver, signal and outcome.",
            ["receiver", "signal", "outcome"],
        )
        self.items_received = r.counter(
            "fleetwatch_receiver_items_received_total", "Spans, data points or log records decoded from requests.",
            ["signal"],
        )
        self.items_accepted = r.counter(
            "fleetwatch_receiver_items_accepted_total", "Spans, data points or log records acknowledged as durable.",
            ["signal"],
        )
        self.items_rejected = r.counter(
            "fleetwatch_receiver_items_rejected_total",
            "Spans, data points or log records rejected alone as invalid (partial success).",
            ["signal", "reason"],
        )
        self.items_refused = r.counter(
            "fleetwatch_receiver_items_refused_total",
            "Spans, data points or log records refused with a retryable error (memory budget, write failure).",
            ["signal", "reason"],
        )
        self.items_duplicate = r.counter(
            "fleetwatch_receiver_items_duplicate_total",
            "Spans, data points or log records in re-sent requests that were acknowledged without writing them twice.",
            ["signal"],
        )
        self.bytes_received = r.counter(
            "fleetwatch_receiver_bytes_received_total",
            "Request body bytes, as sent on the wire and after decompression.",
            ["receiver", "stage"],
        )
        self.batches_written = r.counter(
            "fleetwatch_exporter_batches_written_total", "Batches committed to DuckDB.", ["table"]
        )
        self.rows_written = r.counter("fleetwatch_exporter_rows_written_total", "Rows committed to DuckDB.", ["table"])
        self.write_failures = r.counter(
            "fleetwatch_exporter_write_failures_total", "Batches whose DuckDB commit failed (requests got a retryable error)."
        )
        self.commit_seconds = r.histogram(
            "fleetwatch_exporter_commit_duration_seconds",
            "Time to append and commit one batch.",
            [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        )
        self.checkpoints = r.counter(
            "fleetwatch_exporter_checkpoints_total",
            "DuckDB checkpoints by reason: row_group (a table's new rows filled whole row groups), "
            "wal_size (the write-ahead log reached its threshold first), idle (no writes for checkpoint_idle), "
            "elapsed (the oldest write not yet checkpointed reached checkpoint_max_interval), "
            "start (after opening the file, for the log it replayed).",
            ["reason"],
        )
        self.checkpoint_failures = r.counter(
            "fleetwatch_exporter_checkpoint_failures_total",
            "DuckDB checkpoints that failed (the write-ahead log keeps the data and grows until one succeeds).",
        )
        self.checkpoint_seconds = r.histogram(
            "fleetwatch_exporter_checkpoint_duration_seconds",
            "Time to checkpoint: compress the new rows into the file and truncate the write-ahead log.",
            [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
        )
        self.bulk_requests_written = r.counter(
            "fleetwatch_bulk_requests_written_total",
            "Requests from request logs (fleetwatch ingest, the demo's sample load) committed to DuckDB.",
            ["signal"],
        )
        self.bulk_items_written = r.counter(
            "fleetwatch_bulk_items_written_total",
            "Spans or data points from request logs (fleetwatch ingest, the demo's sample load) committed to DuckDB.",
            ["signal"],
        )
        self.queue_bytes = r.gauge("fleetwatch_queue_bytes", "Decoded bytes queued in the process, not yet durable.")
        self.queue_requests = r.gauge("fleetwatch_queue_requests", "Requests waiting for their batch to commit.")
        self.queue_limit_bytes = r.gauge("fleetwatch_queue_limit_bytes", "The memory budget for queued bytes.")
        self.disk_bytes = r.gauge("fleetwatch_duckdb_file_bytes", "Size of the DuckDB file plus its write-ahead log.")
        self.wal_bytes = r.gauge("fleetwatch_duckdb_wal_bytes", "Size of the DuckDB write-ahead log.")
        self.wal_replayed_bytes = r.gauge(
            "fleetwatch_duckdb_wal_replayed_bytes", "Write-ahead log bytes DuckDB replayed when this process opened the file."
        )
        self.open_seconds = r.gauge(
            "fleetwatch_duckdb_open_seconds", "Time to open the DuckDB file at start-up, write-ahead log replay included."
        )
        self.duckdb_memory_bytes = r.gauge("fleetwatch_duckdb_memory_bytes", "Memory DuckDB's buffer manager holds.")
        r.gauge_callback("process_resident_memory_bytes", "Resident memory of this process.", resident_memory_bytes)
