"""Exponential backoff with jitter, as the OTLP specification asks of exporters.

Usage::

    backoff = Backoff(RetryConfig(initial_interval=1, max_interval=60, multiplier=1.5, jitter=0.5))
    delay = backoff.next_delay()          # 1 s ± 50 %, then 1.5 s ± 50 %, ... capped at 60 s
    delay = backoff.next_delay(retry_after=30)   # the server's advice wins when it asks for longer
    backoff.reset()                       # after a success
    backoff.expired()                     # True once max_elapsed_time (0 = never) has passed

and the classification of answers:

``retryable_status(code)`` — 429, 502, 503, 504 are retried; every other
4xx/5xx is permanent (the request goes to the dead-letter file), except 401
and 403, which are retried too: a wrong token is an operator's mistake, and
dropping a gateway's backlog because of it would be worse than waiting.
``parse_retry_after(value)`` — seconds or an HTTP date, as RFC 9110 allows.
"""

from __future__ import annotations

import email.utils
import random
import time

from collector.config import RetryConfig

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
RETRY_UNTIL_FIXED = frozenset({401, 403})


def retryable_status(code: int) -> bool:
    return code in RETRYABLE_STATUS or code in RETRY_UNTIL_FIXED


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, or None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Backoff:
    """Delays between attempts; see the module docstring."""

    def __init__(self, config: RetryConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self.reset()

    def reset(self) -> None:
        self._interval = self.config.initial_interval
        self._first_failure: float | None = None
        self.attempts = 0

    def next_delay(self, retry_after: float | None = None) -> float:
        if self._first_failure is None:
            self._first_failure = time.monotonic()
        self.attempts += 1
        spread = self.config.jitter * self._interval
        delay = self._interval + self._rng.uniform(-spread, spread)
        self._interval = min(self._interval * self.config.multiplier, self.config.max_interval)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_interval * 10))
        return max(0.0, delay)

    def expired(self) -> bool:
        limit = self.config.max_elapsed_time
        return bool(limit) and self._first_failure is not None and time.monotonic() - self._first_failure > limit
