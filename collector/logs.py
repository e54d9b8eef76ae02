"""Structured (JSON lines) logging for the collector.

Usage::

    configure_logging("info")
    log = logging.getLogger("fleetwatch.receiver.http")
    log.info("listening", extra={"endpoint": "127.0.0.1:4318"})

Each record is one JSON object on stderr with ``ts``, ``level``, ``logger``,
``msg`` and any ``extra`` fields. Nothing logs per span or per data point:
those are counted in /metrics instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp logs one line per request at INFO: that is per-item logging.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
