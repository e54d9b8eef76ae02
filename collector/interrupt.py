"""SIGTERM and Ctrl-C as a request to stop work cleanly, not as a traceback.

A bulk load (``fleetwatch ingest``, the demo's sample load) checks the flag
between requests, commits what it has and returns::

    with StopSignals() as stop:
        for record in records:
            if stop.requested:
                break
            ...
    if stop.signal_name:
        print(f"stopped by {stop.signal_name}; everything loaded so far is committed")

Handlers are installed only in the main thread (Python delivers signals
there) and the previous ones are restored on exit. A second signal while
stopping is ignored: the commit in progress finishes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: SIGTERM / SIGINT set ``requested`` instead of killing the process."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None  # the first signal received
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    @property
    def signal_name(self) -> str | None:
        """``SIGTERM`` or ``SIGINT`` once one arrived, else None."""
        return signal.Signals(self.signum).name if self.signum is not None else None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in _SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
