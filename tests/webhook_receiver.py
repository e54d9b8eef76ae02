"""A real HTTP receiver for alert notifications in tests: a webhook, or a fake Alertmanager.

::

    with WebhookReceiver() as receiver:          # 127.0.0.1, a free port (tls=(cert, key): https)
        url = receiver.url("/hook")              # or receiver.url() + "/api/v2/alerts" for Alertmanager
        receiver.fail_next(2, status=503)        # the next two requests get 503, then 200 again
        receiver.hold_next(1)                    # the one after is recorded, then left unanswered...
        receiver.release()                       # ...until this (or stop())
        receiver.answer_next(1, 400)             # any status, in the order scripted
        receiver.stop()                          # the port is closed: connections are refused
        receiver.start()                         # back on the same port
        receiver.wait_for(2)                     # at least two requests recorded (or AssertionError)
        receiver.requests[0].json, .path, .headers, .status (what it answered)

Every request is recorded, answered or failed, in arrival order, across
stops and restarts.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import wait_until


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    json: Any
    status: int  # what the receiver answered


class WebhookReceiver:
    """See the module docstring."""

    def __init__(self, port: int = 0, *, tls: tuple[str, str] | None = None) -> None:
        self.port = port
        self.tls = tls  # (cert_file, key_file): serve https
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._script: list[tuple[int, bool]] = []  # (status, hold) for the next requests; then 200
        self._released = threading.Event()
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
                status, hold = receiver._answer()
                with receiver._lock:
                    receiver.requests.append(ReceivedRequest(self.path, dict(self.headers.items()), parsed, status))
                if hold:
                    receiver._released.wait()
                body = b"{}" if status < 300 else f"status {status} as told".encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up or was killed while the answer was held: what tests simulate

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def url(self, path: str = "") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def answer_next(self, count: int, status: int = 200, *, hold: bool = False) -> None:
        """Answer ``status`` to the next ``count`` requests (after those already scripted); ``hold``: only
        once :meth:`release` is called."""
        with self._lock:
            self._script.extend([(status, hold)] * count)
            if hold:
                self._released.clear()

    def fail_next(self, count: int, status: int = 503) -> None:
        self.answer_next(count, status)

    def hold_next(self, count: int = 1) -> None:
        self.answer_next(count, 200, hold=True)

    def release(self) -> None:
        self._released.set()

    def _answer(self) -> tuple[int, bool]:
        with self._lock:
            return self._script.pop(0) if self._script else (200, False)

    def received(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self.requests)

    def accepted(self) -> list[ReceivedRequest]:
        """The requests answered with a 2xx."""
        return [r for r in self.received() if 200 <= r.status < 300]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[ReceivedRequest]:
        """Wait until ``count`` requests are recorded; AssertionError after ``timeout`` seconds."""
        wait_until(lambda: len(self.received()) >= count, timeout, f"{count} requests at the webhook receiver")
        return self.received()

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
