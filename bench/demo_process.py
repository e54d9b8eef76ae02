"""``fleetwatch demo`` as a child process (tests, bench/dashboards.py): free ports, its stderr lines, its Streamlit child.

::

    demo = DemoProcess(tmp_path / "demo.duckdb")
    demo.start()
    url = demo.wait_for(r"^dashboards: (\\S+)", timeout=600).group(1)
    demo.wait_for(r"^demo ready in", timeout=900)
    demo.api_url                     # the read API
    code = demo.stop()               # SIGTERM; the exit code
    demo.streamlit_pids              # the Streamlit children seen while it ran

One demo is shared by tests/test_demo.py and tests/test_dashboards_e2e.py
(the ``running_demo`` session fixture in conftest.py): the sample's load and
the jobs' catch-up take minutes on a small machine.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

import psutil

from bench.harness import free_port


class DemoProcess:
    """One ``fleetwatch demo`` run; see the module docstring."""

    def __init__(self, db: Path, *extra_args: str, echo: TextIO | None = None) -> None:
        self.db = db
        self.echo = echo  # a stream that gets each stderr line as it comes (a test's captured output)
        self.http_port, self.grpc_port, self.api_port, self.dashboards_port = (free_port() for _ in range(4))
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.streamlit_pids: set[int] = set()
        self._changed = threading.Condition()
        self._eof = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", "demo", "--db", str(self.db), "--http-port", str(self.http_port),
             "--grpc-port", str(self.grpc_port), "--api-port", str(self.api_port),
             "--dashboards-port", str(self.dashboards_port), *self.extra_args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buffer = ""
        while chunk := self.proc.stderr.read(1):
            if chunk in "\r\n":  # a terminal progress bar rewrites its line with \r
                if buffer:
                    if self.echo is not None:
                        print(f"demo: {buffer}", file=self.echo, flush=True)
                    with self._changed:
                        self.lines.append(buffer)
                        self._changed.notify_all()
                buffer = ""
            else:
                buffer += chunk
        with self._changed:
            if buffer:
                self.lines.append(buffer)
            self._eof = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        """The first stderr line matching ``pattern`` (waits for it); fails if the demo exits first."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self.lines)
                self._note_children()
                if self._eof or time.monotonic() > deadline:
                    tail = "\n".join(self.lines[-30:])
                    raise AssertionError(f"no line matching {pattern!r} (exit code {self.proc.poll()}):\n{tail}")
                self._changed.wait(1.0)

    def _note_children(self) -> None:
        try:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                if "dashboards.child" in " ".join(child.cmdline()):
                    self.streamlit_pids.add(child.pid)
        except psutil.Error:
            pass

    def stop(self, timeout: float = 180) -> int:
        """SIGTERM, then wait; the exit code (a stopped demo's stays available)."""
        if self.proc.poll() is None:
            self._note_children()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the demo did not stop within its timeout after SIGTERM") from None
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL, as a crash or ``kill -9`` would: the demo runs nothing more, its children are on their own."""
        self._note_children()
        self.proc.kill()
        return self.proc.wait()

    def orphans(self) -> list[int]:
        """Streamlit children still alive (after stop: orphans)."""
        return [pid for pid in self.streamlit_pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
