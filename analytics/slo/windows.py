"""Window sums of one SLO's per-minute good/total counts, at every minute of a range, incrementally.

The burn-rate rules read eight windows per SLO and group (5m, 30m, 1h, 2h,
6h, 1d, 3d and the period) at every evaluation instant. Summing 30 days of
minute rows per group at every minute would cost a scan of the SLI table
per tick, so the sums advance a chunk of minutes at a time and keep only
what the next chunk needs::

    sums = WindowSums(spec, "slo_sli_minute")
    chunk = sums.advance(MinuteRows(read, "slo_sli_minute", [spec.name]), start, end)   # instants start+1m .. end
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


@dataclass
class SloRows:
    """One SLO's rows of a range: group keys as codes into ``keys``, and numpy columns."""

    keys: list[str]          # the distinct group keys of the range (all SLOs of the table)
    codes: np.ndarray        # per row, its index into ``keys``
    i: np.ndarray | None     # per row, minutes since the range's start (None for sums)
    good: np.ndarray
    total: np.ndarray


class MinuteRows:
    """The SLI minutes of every SLO of one table, read once per time range and handed out per SLO.

    Ten SLOs in one table would otherwise scan the same range ten times
    (the table is ordered by time, not by SLO). Strings are dictionary
    encoded once per range, so splitting a range by SLO and mapping rows
    to groups compares integers, never a string per row. The ranges of one
    chunk are few (its new minutes, the minutes leaving each period), so a
    handful are kept.
    """

    KEEP = 8

    def __init__(self, read: Read, table: str, slos: list[str]) -> None:
        self.read = read
        self.table = table
        self.slos = slos
        self._ranges: dict[tuple, tuple] = {}

    def _range(self, key: tuple, sql: str, params: dict) -> tuple:
        if key not in self._ranges:
            if len(self._ranges) >= self.KEEP:
                self._ranges.pop(next(iter(self._ranges)))
            table = self.read(sql, {**params, "slos": self.slos})
            slo = pc.dictionary_encode(table["slo"]).combine_chunks()
            group = pc.dictionary_encode(table["group_key"]).combine_chunks()
            columns = {name: table[name].to_numpy() for name in table.column_names if name in ("i", "good", "total")}
            self._ranges[key] = (slo.dictionary.to_pylist(), slo.indices.to_numpy(zero_copy_only=False),
                                 group.dictionary.to_pylist(), group.indices.to_numpy(zero_copy_only=False),
                                 columns)
        return self._ranges[key]

    def _of(self, slo: str, cached: tuple) -> SloRows:
        slo_names, slo_codes, keys, codes, columns = cached
        if slo not in slo_names:
            empty = np.zeros(0, dtype=np.int64)
            return SloRows(keys, empty, empty if "i" in columns else None, empty, empty)
        rows = np.flatnonzero(slo_codes == slo_names.index(slo))
        return SloRows(keys, codes[rows], columns["i"][rows] if "i" in columns else None,
                       columns["good"][rows], columns["total"][rows])

    def minutes(self, slo: str, start: datetime, minutes: int) -> SloRows:
        """``slo``'s rows of ``[start, start + minutes)``, ``i`` in minutes since ``start``."""
        return self._of(slo, self._range(
            ("minutes", start, minutes),
            f"SELECT slo, group_key, (epoch(window_start) - epoch($start::TIMESTAMP))::BIGINT // 60 AS i, "
            f"good::BIGINT AS good, total::BIGINT AS total FROM {self.table} "
            "WHERE window_start >= $start AND window_start < $end AND slo IN (SELECT unnest($slos))",
            {"start": start, "end": start + minutes * MINUTE}))

    def sums(self, slo: str, start: datetime, end: datetime) -> SloRows:
        """``slo``'s good and total per group summed over ``[start, end)``."""
        return self._of(slo, self._range(
            ("sums", start, end),
            f"SELECT slo, group_key, sum(good)::BIGINT AS good, sum(total)::BIGINT AS total FROM {self.table} "
            "WHERE window_start >= $start AND window_start < $end AND slo IN (SELECT unnest($slos)) GROUP BY ALL",
            {"start": start, "end": end}))


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
    def _groups_of(self, rows: SloRows) -> np.ndarray:
        """The group index of each row (new groups registered), through the range's key codes."""
        present = np.unique(rows.codes)
        mapping = np.zeros(len(rows.keys), dtype=np.int64)
        for code in present.tolist():
            key = rows.keys[code]
            if key not in self._index:
                self._index[key] = len(self.group_keys)
                self.group_keys.append(key)
                self.groups.append(json.loads(key))
            mapping[code] = self._index[key]
        return mapping[rows.codes]

    def _dense(self, rows: MinuteRows, start: datetime, minutes: int) -> tuple[np.ndarray, np.ndarray]:
        """Good and total per group and minute of ``[start, start + minutes)``."""
        picked = rows.minutes(self.spec.name, start, minutes)
        g = self._groups_of(picked)
        cells = len(self.group_keys) * minutes
        flat = g * minutes + picked.i
        # bincount sums: a (never expected) duplicate row adds, it does not overwrite.
        good = np.bincount(flat, weights=picked.good, minlength=cells)
        total = np.bincount(flat, weights=picked.total, minlength=cells)
        shape = (len(self.group_keys), minutes)
        return good.astype(np.int64).reshape(shape), total.astype(np.int64).reshape(shape)

    def _sums(self, rows: MinuteRows, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
        """Good and total per group over ``[start, end)``."""
        picked = rows.sums(self.spec.name, start, end)
        g = self._groups_of(picked)
        good = np.zeros(len(self.group_keys), dtype=np.int64)
        total = np.zeros_like(good)
        np.add.at(good, g, picked.good)
        np.add.at(total, g, picked.total)
        return good, total

    @staticmethod
    def _grow(a: np.ndarray, groups: int) -> np.ndarray:
        if a.shape[0] == groups:
            return a
        pad = np.zeros((groups - a.shape[0], *a.shape[1:]), dtype=a.dtype)
        return np.concatenate([a, pad])

    # -- advancing -------------------------------------------------------
    def advance(self, rows: MinuteRows, start: datetime, end: datetime) -> ChunkSums:
        """Window sums at the instants ``start + 1m, ..., end`` (``end - start`` at most :attr:`max_chunk`)."""
        n = int((end - start) / MINUTE)
        if n <= 0 or start + n * MINUTE != end:
            raise ValueError(f"advance: need whole minutes start < end, got {start} .. {end}")
        if end - start > self.max_chunk:
            raise ValueError(f"advance: a chunk of at most {self.max_chunk}, got {end - start}")
        near, period = self.near_minutes, self.period_minutes
        if self._pos != start:  # first chunk, a jump, or invalidated: rebuild from the table
            self._near_good, self._near_total = self._dense(rows, start - near * MINUTE, near)
            self._mid_good, self._mid_total = self._sums(rows, start - period * MINUTE, start - near * MINUTE)
            groups = len(self.group_keys)
            mid_total = self._grow(self._mid_total, groups)
            self._first = np.where(mid_total > 0, -np.inf,
                                   _first_minute(self._grow(self._near_total, groups), _minute(start) - near))
        new_good, new_total = self._dense(rows, start, n)
        leave_good, leave_total = self._dense(rows, start - period * MINUTE, n)
        groups = len(self.group_keys)
        near_good, near_total = self._grow(self._near_good, groups), self._grow(self._near_total, groups)
        mid_good, mid_total = self._grow(self._mid_good, groups), self._grow(self._mid_total, groups)
        new_good, new_total = self._grow(new_good, groups), self._grow(new_total, groups)
        leave_good, leave_total = self._grow(leave_good, groups), self._grow(leave_total, groups)

        def cumulative(a: np.ndarray) -> np.ndarray:
            out = np.zeros((a.shape[0], a.shape[1] + 1), dtype=np.int64)
            np.cumsum(a, axis=1, out=out[:, 1:])
            return out

        full_good = np.concatenate([near_good, new_good], axis=1)  # minutes [start - 3d, end)
        full_total = np.concatenate([near_total, new_total], axis=1)
        cg, ct = cumulative(full_good), cumulative(full_total)
        lg, lt = cumulative(leave_good), cumulative(leave_total)
        ends = slice(near + 1, near + 1 + n)  # per instant i, the column just past its last minute
        good: dict[str, np.ndarray] = {}
        total: dict[str, np.ndarray] = {}
        for name, window in self.windows.items():
            w = int(window / MINUTE)
            if name == "period":
                # [t - P, start - 3d) is the middle sum less the minutes that left; [start - 3d, t) is dense.
                good[name] = mid_good[:, None] - lg[:, 1:] + cg[:, ends]
                total[name] = mid_total[:, None] - lt[:, 1:] + ct[:, ends]
            else:
                starts = slice(near + 1 - w, near + 1 + n - w)
                good[name] = cg[:, ends] - cg[:, starts]
                total[name] = ct[:, ends] - ct[:, starts]
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
