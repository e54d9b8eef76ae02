"""Streamlit as the child of ``fleetwatch demo`` or ``fleetwatch dashboards``: it ends when its parent has gone.

:class:`dashboards.launcher.DashboardsServer` starts ``python -m dashboards.child
PARENT_PID <streamlit arguments>``. A thread here notices within a second that
the parent is gone (the child is re-parented: ``os.getppid()`` changes), as
after a ``kill -9`` of the demo, and stops Streamlit the way Ctrl-C does
(SIGTERM), so no dashboards server is left answering for a read API that no
longer exists. The watch runs in the child because nothing may run between
fork and exec in the parent (see the launcher's docstring).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

POLL_S = 1.0


def watch_parent(parent: int, poll_s: float = POLL_S) -> threading.Thread:
    """Send this process SIGTERM once its parent is no longer ``parent``; returns the (daemon) watching thread."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> None:
    if not argv or not argv[0].isdigit():
        raise SystemExit("usage: python -m dashboards.child PARENT_PID <streamlit arguments>")
    watch_parent(int(argv[0]))
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", *argv[1:]]
    streamlit_cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main(sys.argv[1:])
