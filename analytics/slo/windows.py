"""Window sums of one SLO's per-minute good/total counts, at every minute of a range, incrementally.

The burn-rate rules read eight windows per SLO and group (5m, 30m, 1h, 2h,
6h, 1d, 3d and the period) at every evaluation instant. Summing 30 days of
minute rows per group at every minute would cost a scan of the SLI table
per tick, so the sums advance a chunk of minutes at a time and keep only
what the next chunk needs::

    sums = WindowSums(spec, "slo_sli_minute")
    chunk = sums.advance(read, start, end)     # instants start+1m .. end
    chunk.good["1h"][g, i], chunk.total["1h"][g, i]   # group g at instant i

State between chunks: the last 3 days of minutes, dense per group, and
per group one sum of the rest of the period. Advancing reads the chunk's
new minutes and the minutes leaving the period, nothing else. Every sum
is an exact integer; a chunk is never longer than period - 3 days, so the
minutes leaving the period are always inside the part kept as one sum.

An instant ``t`` (a minute boundary) sees the minutes ``[t - w, t)`` for a
window ``w``: the SLI of the minute that just closed counts at once.

Late data changes minutes already summed: :meth:`WindowSums.invalidate`
makes the next :meth:`advance` rebuild its state from the table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics.slo.rules import alert_windows
from analytics.slo.spec import SloSpec

Read = Callable[[str, dict], pa.Table]
MINUTE = timedelta(minutes=1)
NEAR = timedelta(days=3)  # the longest rule window: kept minute by minute


def window_names(spec: SloSpec) -> dict[str, timedelta]:
    """The windows an SLO is evaluated over, by name (``5m`` ... ``3d``, ``period``), shortest first."""
    from analytics.slo.payload import format_duration

    rules = alert_windows(spec.period_duration)
    names = {format_duration(w).replace(" ", ""): w for w in rules.windows}
    names["period"] = spec.period_duration
    return names


@dataclass
class ChunkSums:
    """Window sums at the instants of one chunk: arrays of shape (groups, instants) per window name."""

    instants: list[datetime]
    group_keys: list[str]
    groups: list[dict[str, str]]
    good: dict[str, np.ndarray]
    total: dict[str, np.ndarray]
    history: np.ndarray  # (groups, instants): minutes since the group's first event (0: none yet)


class WindowSums:
    """Exact window sums of one SLO's SLI minutes; see the module docstring."""

    def __init__(self, spec: SloSpec, table: str) -> None:
        self.spec = spec
        self.table = table
        self.windows = window_names(spec)
        self.period_minutes = int(spec.period_duration / MINUTE)
        self.near_minutes = int(NEAR / MINUTE)
        if self.period_minutes <= self.near_minutes:
            raise ValueError(f"slo {spec.name}: period must be longer than {NEAR.days} days")
        self.max_chunk = timedelta(minutes=self.period_minutes - self.near_minutes)
        self.group_keys: list[str] = []
        self.groups: list[dict[str, str]] = []
        self._index: dict[str, int] = {}
        self._pos: datetime | None = None
        self._near_good = self._near_total = np.zeros((0, self.near_minutes), dtype=np.int64)
        self._mid_good = self._mid_total = np.zeros(0, dtype=np.int64)
        # Per group, the minute (since the epoch) of its first event in the period; -inf: before the 3 days held.
        self._first = np.zeros(0, dtype=np.float64)

    def invalidate(self) -> None:
        """Forget the state: the next chunk rebuilds it from the table (after late data)."""
        self._pos = None

    @property
    def position(self) -> datetime | None:
        """The end of the last chunk advanced (None: nothing held)."""
        return self._pos

    # -- reading ---------------------------------------------------------
    def _groups_of(self, keys: pa.ChunkedArray) -> np.ndarray:
        """The group index of each key (new groups registered), without a Python call per row."""
        for key in pc.unique(keys).to_pylist():
            if key not in self._index:
                self._index[key] = len(self.group_keys)
                self.group_keys.append(key)
                self.groups.append(json.loads(key))
        return pc.index_in(keys, value_set=pa.array(self.group_keys, pa.string())).to_numpy(zero_copy_only=False)

    def _dense(self, read: Read, start: datetime, minutes: int) -> tuple[np.ndarray, np.ndarray]:
        """Good and total per group and minute of ``[start, start + minutes)``."""
        rows = read(f"SELECT group_key, (epoch(window_start) - epoch($start::TIMESTAMP))::BIGINT // 60 AS i, "
                    f"sum(good)::BIGINT AS good, sum(total)::BIGINT AS total FROM {self.table} "
                    "WHERE slo = $slo AND window_start >= $start AND window_start < $end GROUP BY ALL",
                    {"slo": self.spec.name, "start": start, "end": start + minutes * MINUTE})
        g = self._groups_of(rows["group_key"])
        good = np.zeros((len(self.group_keys), minutes), dtype=np.int64)
        total = np.zeros_like(good)
        if rows.num_rows:
            i = rows["i"].to_numpy()
            good[g, i] = rows["good"].to_numpy()
            total[g, i] = rows["total"].to_numpy()
        return good, total

    def _sums(self, read: Read, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Good and total per group over ``[start, end)``."""
        rows = read(f"SELECT group_key, sum(good)::BIGINT AS good, sum(total)::BIGINT AS total FROM {self.table} "
                    "WHERE slo = $slo AND window_start >= $start AND window_start < $end GROUP BY ALL",
                    {"slo": self.spec.name, "start": start, "end": end})
        g = self._groups_of(rows["group_key"])
        good = np.zeros(len(self.group_keys), dtype=np.int64)
        total = np.zeros_like(good)
        if rows.num_rows:
            good[g] = rows["good"].to_numpy()
            total[g] = rows["total"].to_numpy()
        return good, total

    @staticmethod
    def _grow(a: np.ndarray, groups: int) -> np.ndarray:
        if a.shape[0] == groups:
            return a
        pad = np.zeros((groups - a.shape[0], *a.shape[1:]), dtype=a.dtype)
        return np.concatenate([a, pad])

    # -- advancing -------------------------------------------------------
    def advance(self, read: Read, start: datetime, end: datetime) -> ChunkSums:
        """Window sums at the instants ``start + 1m, ..., end`` (``end - start`` at most :attr:`max_chunk`)."""
        n = int((end - start) / MINUTE)
        if n <= 0 or start + n * MINUTE != end:
            raise ValueError(f"advance: need whole minutes start < end, got {start} .. {end}")
        if end - start > self.max_chunk:
            raise ValueError(f"advance: a chunk of at most {self.max_chunk}, got {end - start}")
        near, period = self.near_minutes, self.period_minutes
        if self._pos != start:  # first chunk, a jump, or invalidated: rebuild from the table
            self._near_good, self._near_total = self._dense(read, start - near * MINUTE, near)
            self._mid_good, self._mid_total = self._sums(read, start - period * MINUTE, start - near * MINUTE)
            groups = len(self.group_keys)
            mid_total = self._grow(self._mid_total, groups)
            self._first = np.where(mid_total > 0, -np.inf,
                                   _first_minute(self._grow(self._near_total, groups), _minute(start) - near))
        new_good, new_total = self._dense(read, start, n)
        leave_good, leave_total = self._dense(read, start - period * MINUTE, n)
        groups = len(self.group_keys)
        near_good, near_total = self._grow(self._near_good, groups), self._grow(self._near_total, groups)
        mid_good, mid_total = self._grow(self._mid_good, groups), self._grow(self._mid_total, groups)
        new_good, new_total = self._grow(new_good, groups), self._grow(new_total, groups)
        leave_good, leave_total = self._grow(leave_good, groups), self._grow(leave_total, groups)

        def cumulative(a: np.ndarray) -> np.ndarray:
            return np.concatenate([np.zeros((a.shape[0], 1), dtype=np.int64), np.cumsum(a, axis=1)], axis=1)

        full_good = np.concatenate([near_good, new_good], axis=1)  # minutes [start - 3d, end)
        full_total = np.concatenate([near_total, new_total], axis=1)
        cg, ct = cumulative(full_good), cumulative(full_total)
        lg, lt = cumulative(leave_good), cumulative(leave_total)
        ends = near + 1 + np.arange(n)  # column just past instant i's last minute
        good: dict[str, np.ndarray] = {}
        total: dict[str, np.ndarray] = {}
        for name, window in self.windows.items():
            w = int(window / MINUTE)
            if name == "period":
                # [t - P, start - 3d) is the middle sum less the minutes that left; [start - 3d, t) is dense.
                good[name] = mid_good[:, None] - lg[:, 1:] + cg[:, ends]
                total[name] = mid_total[:, None] - lt[:, 1:] + ct[:, ends]
            else:
                good[name] = cg[:, ends] - cg[:, ends - w]
                total[name] = ct[:, ends] - ct[:, ends - w]
        first = np.concatenate([self._first, np.full(groups - len(self._first), np.inf)])
        first = np.minimum(first, _first_minute(new_total, _minute(start)))
        instant_minutes = _minute(start) + 1 + np.arange(n)
        history = np.maximum(instant_minutes[None, :] - first[:, None], 0)  # +inf first (no event yet): 0
        self._first = first
        self._mid_good = mid_good - lg[:, n] + cg[:, n]
        self._mid_total = mid_total - lt[:, n] + ct[:, n]
        self._near_good, self._near_total = full_good[:, n:], full_total[:, n:]
        self._pos = end
        instants = [start + (i + 1) * MINUTE for i in range(n)]
        return ChunkSums(instants, list(self.group_keys), list(self.groups), good, total, history)


def _minute(t: datetime) -> int:
    return int((t - datetime(1970, 1, 1)) // MINUTE)


def _first_minute(total: np.ndarray, first_column_minute: int) -> np.ndarray:
    """Per row, the minute of its first non-zero column (+inf for none)."""
    seen = total > 0
    index = np.argmax(seen, axis=1).astype(np.float64)
    return np.where(seen.any(axis=1), first_column_minute + index, np.inf)
