"""The dashboards as a child process: Streamlit serving dashboards/app.py on localhost.

``fleetwatch demo`` and ``fleetwatch dashboards`` run the app this way, so
the process that owns the DuckDB file never imports Streamlit (the app
reads only through the read API)::

    server = DashboardsServer(DashboardsConfig(api_url="http://127.0.0.1:4319", port=8501))
    server.start()             # spawns Streamlit; returns at once
    server.wait_ready(60)      # True once /_stcore/health answers
    print(server.url)          # http://127.0.0.1:8501/
    server.stop()              # SIGTERM, then SIGKILL after a grace period; no orphan left

Streamlit runs with the flags of :func:`dashboards.launch.streamlit_argv`
(headless, 127.0.0.1 unless told otherwise, usage statistics off). The API
token travels in the child's environment (``FLEETWATCH_API_TOKEN``), never
on its command line, where ``ps`` would show it. The child is started
without running Python code between fork and exec (no ``preexec_fn``): in a
parent with gRPC threads (``fleetwatch demo``), gRPC's fork handlers made
such a child abort. Every orderly stop (SIGTERM, Ctrl-C, an error) ends it
from here; after a ``kill -9`` of the parent the child ends itself within a
second or two (:mod:`dashboards.child` watches its parent).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from dashboards.launch import APP, streamlit_argv


@dataclass
class DashboardsConfig:
    """Where the dashboards listen and which read API they ask."""

    api_url: str
    port: int = 8501
    host: str = "127.0.0.1"
    api_token: str | None = None

    def validate(self) -> None:
        if not self.api_url.startswith(("http://", "https://")):
            raise ValueError(f"dashboards: the read API URL must start with http:// or https://, got {self.api_url!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"dashboards: port must be 1..65535, got {self.port}")
        if not APP.is_file():
            raise ValueError(f"dashboards: the app {APP} is missing (install fleetwatch with its dashboards)")


class DashboardsServer:
    """One Streamlit child process; see the module docstring."""

    def __init__(self, config: DashboardsConfig) -> None:
        config.validate()
        self.config = config
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}/"

    def command(self) -> list[str]:
        c = self.config
        return [sys.executable, "-m", "dashboards.child", str(os.getpid()),
                *streamlit_argv(c.api_url, port=c.port, address=c.host)]

    def start(self) -> None:
        env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        if self.config.api_token:  # else the child inherits FLEETWATCH_API_TOKEN, if set
            env["FLEETWATCH_API_TOKEN"] = self.config.api_token
        self.process = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until Streamlit answers its health check; False on timeout or if it exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        return False

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace: float = 10.0) -> None:
        """End the child: SIGTERM, then SIGKILL if it has not gone within ``grace`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
