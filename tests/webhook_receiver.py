"""A real HTTP receiver for alert notifications in tests: a webhook, or a fake Alertmanager.

::

    with WebhookReceiver() as receiver:          # 127.0.0.1, a free port
        url = receiver.url("/hook")              # or receiver.url() + "/api/v2/alerts" for Alertmanager
        receiver.fail_next(2, status=503)        # the next two requests get 503, then 200 again
        receiver.stop()                          # the port is closed: connections are refused
        receiver.start()                         # back on the same port
        receiver.wait_for(2)                     # at least two requests recorded (or AssertionError)
        receiver.requests[0].json, .path, .headers, .status (what it answered)

Every request is recorded, answered or failed, in arrival order, across
stops and restarts.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    json: Any
    status: int  # what the receiver answered


class WebhookReceiver:
    """See the module docstring."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                status = receiver._answer()
                with receiver._lock:
                    receiver.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), parsed, status))
                body = b"{}" if status < 300 else f"status {status} as told".encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer ``status`` to the next ``count`` requests."""
        with self._lock:
            self._failures.extend([status] * count)

    def _answer(self) -> int:
        with self._lock:
            return self._failures.pop(0) if self._failures else 200

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[ReceivedRequest]:
        """The requests answered with a 2xx."""
        return [r for r in self.received() if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        """Wait until ``count`` requests are recorded; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.received()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got {len(self.received())} requests, expected {count}")
            time.sleep(0.05)
        return self.received()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
