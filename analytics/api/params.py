"""Typed parameters of named queries: parsing and validation of query-string values.

Every value arrives as text in a URL. A :class:`Param` turns it into the
Python value DuckDB binds (never into SQL text), or raises
:class:`BadParameter` naming the parameter and what was wrong::

    since = Param("since", "timestamp", default="-1h", doc="start of the range")
    since.parse("2026-12-01T10:00:00Z")   # datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    since.parse("-30m", now=t)            # t - 30 minutes
    Param("limit", "int", default=100, minimum=1).parse("0")   # BadParameter

Times take RFC 3339 (a zone is required: ``Z`` or ``+02:00``) or relative
forms: ``now``, ``-15m``, ``-1h``, ``-7d``, ``now-90s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

KINDS = ("timestamp", "duration", "int", "float", "string", "choice")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_RELATIVE = re.compile(r"^(?:now)?-(\d+(?:\.\d+)?(?:ms|s|m|h|d|w))$")
MAX_STRING = 1024


class BadParameter(ValueError):
    """A query parameter is unknown, missing or has a bad value; the message names it."""


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1.5h``, ``7d`` -> timedelta; a bare number is refused (no unit)."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit (ms, s, m, h, d, w), e.g. 15m")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """RFC 3339 with a zone, ``now``, or ``-1h`` / ``now-1h`` relative to ``now``; UTC out."""
    text = text.strip()
    now = now or datetime.now(timezone.utc)
    if text == "now":
        return now
    relative = _RELATIVE.match(text)
    if relative:
        return now - parse_duration(relative.group(1))
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use RFC 3339 (2026-12-01T10:00:00Z) "
                         "or a relative form (now, -1h, -7d)") from None
    if "T" not in text.upper() and " " not in text:
        raise ValueError(f"{text!r} is a date, not a time: add a time and a zone (2026-12-01T00:00:00Z)")
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +02:00")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Param:
    """One parameter of a named query: its name, kind, default and limits."""

    name: str
    kind: str
    doc: str = ""
    default: Any = None
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"parameter {self.name}: kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"parameter {self.name}: a choice needs its choices")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name):
            raise ValueError(f"parameter name {self.name!r} must be lower_snake_case")

    def parse(self, raw: str | None, now: datetime | None = None) -> Any:
        """The bound value for ``raw`` (None = not given), or :class:`BadParameter`."""
        if raw is None:
            if self.required:
                raise BadParameter(f"parameter {self.name!r} is required ({self.doc or self.kind})")
            raw = self.default
            if raw is None or not isinstance(raw, str):
                return raw
        try:
            value = self._convert(raw, now)
        except ValueError as exc:
            raise BadParameter(f"parameter {self.name!r}: {exc}") from None
        self._check_range(value)
        return value

    def _convert(self, raw: str, now: datetime | None) -> Any:
        if self.kind == "timestamp":
            return parse_time(raw, now)
        if self.kind == "duration":
            return parse_duration(raw)
        if self.kind == "int":
            if not re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
                raise ValueError(f"{raw!r} is not an integer")
            return int(raw)
        if self.kind == "float":
            value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError(f"{raw!r} is not a finite number")
            return value
        if len(raw) > MAX_STRING:
            raise ValueError(f"longer than {MAX_STRING} characters")
        if self.kind == "choice" and raw not in self.choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
        return raw

    def _check_range(self, value: Any) -> None:
        if self.kind not in ("int", "float", "duration"):
            return
        number = value.total_seconds() if isinstance(value, timedelta) else value
        if self.minimum is not None and number < self.minimum:
            raise BadParameter(f"parameter {self.name!r}: {number:g} is below the minimum {self.minimum:g}")
        if self.maximum is not None and number > self.maximum:
            raise BadParameter(f"parameter {self.name!r}: {number:g} is above the maximum {self.maximum:g}")

    def describe(self) -> dict:
        """What ``GET /api/v1/queries`` lists for this parameter."""
        out = {"name": self.name, "type": self.kind, "required": self.required, "doc": self.doc}
        if self.default is not None:
            out["default"] = self.default
        if self.choices:
            out["choices"] = list(self.choices)
        for key in ("minimum", "maximum"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out
