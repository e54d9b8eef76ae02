"""Mergeable, deterministic summaries of one feature: the reference's profile and every current window's.

A :class:`Layout` fixes how values are bucketed (the reference's quantile
edges, or its top-K categories); a :class:`Summary` holds counts on a
layout. The reference is summarised once, on a layout computed from itself;
each current window is summarised on the reference's layout, so windows
merge by adding counts (a day is the sum of its hours)::

    day = hour_summaries[0]
    for hour in hour_summaries[1:]:
        day = day.merge(hour)                 # ValueError if the layouts differ
    text = day.to_json_text()                 # the same input gives the same bytes
    assert Summary.from_json_text(text) == day
    table = summaries_to_arrow([day])         # one row per summary
    assert summaries_from_arrow(table) == [day]

Numeric layouts: ``edges`` are the reference's quantiles at ``probs``: 0, 1/fine_bins,
..., 1 plus finer levels in both tails (:data:`TAIL_LEVELS`; duplicates kept, so a point mass gives empty zero-width bins); a value ``x``
falls into bin ``b`` = the number of edges <= x, so bin 0 is the open bin
below the reference's minimum and the last bin (``len(edges)``) is
``[reference max, +inf)``. Sums are of ``x - shift`` (``shift``: the
reference's median) and kept to 12 significant digits, so the last-bit noise
of parallel floating-point sums cannot change a profile's bytes.

Categorical layouts: ``categories`` are the reference's top-K values by count
(ties by value); ``counts`` has one entry per category and a last one for
every other value. Missing values (NULL, NaN, +-inf, text that is not a
number in a numeric feature) are counted in ``missing``, never dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pyarrow as pa

FORMAT_VERSION = 1
SIGNIFICANT_DIGITS = 12
# Extra reference quantiles in each tail: values spread evenly inside a bin is a poor model of
# a 1 % tail bin reaching to the minimum, and it is what limits KS / Wasserstein from bins.
TAIL_LEVELS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005)


def quantile_levels(fine_bins: int) -> tuple[float, ...]:
    """The reference quantiles a numeric layout's edges sit at: 0, 1/fine_bins, ..., 1 and the tail levels."""
    levels = {round(i / fine_bins, 12) for i in range(fine_bins + 1)}
    levels |= set(TAIL_LEVELS) | {round(1 - t, 12) for t in TAIL_LEVELS}
    return tuple(sorted(levels))


def stable_float(value: float) -> float:
    """``value`` to 12 significant digits: what a profile keeps of a floating-point sum."""
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if value else 0.0


@dataclass(frozen=True)
class Layout:
    """How one feature's values are bucketed: ``kind`` numeric (``edges``, ``shift``) or categorical (``categories``)."""

    name: str
    kind: str
    edges: tuple[float, ...] = ()
    probs: tuple[float, ...] = ()  # the reference quantile of each edge
    categories: tuple[str, ...] = ()
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("numeric", "categorical"):
            raise ValueError(f"feature {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")
        if any(b < a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"feature {self.name!r}: bin edges must be non-decreasing")
        if self.kind == "numeric" and len(self.probs) != len(self.edges):
            raise ValueError(f"feature {self.name!r}: {len(self.probs)} quantile levels for {len(self.edges)} edges")

    @property
    def bins(self) -> int:
        """Number of count buckets: edges + 1 (numeric), categories + "other" (categorical)."""
        return len(self.edges) + 1 if self.kind == "numeric" else len(self.categories) + 1


@dataclass(frozen=True)
class Summary:
    """Counts of one feature on a :class:`Layout`, plus (numeric) shifted sums, min and max."""

    layout: Layout
    counts: tuple[int, ...]
    missing: int = 0
    sum: float = 0.0       # of x - layout.shift
    sum_sq: float = 0.0    # of (x - layout.shift) ** 2
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self) -> None:
        if len(self.counts) != self.layout.bins:
            raise ValueError(f"feature {self.layout.name!r}: {len(self.counts)} counts for {self.layout.bins} bins")
        if self.missing < 0 or any(c < 0 for c in self.counts):
            raise ValueError(f"feature {self.layout.name!r}: counts must not be negative")

    @property
    def name(self) -> str:
        return self.layout.name

    @property
    def kind(self) -> str:
        return self.layout.kind

    @property
    def count(self) -> int:
        """Values that are not missing."""
        return sum(self.counts)

    @property
    def total(self) -> int:
        return self.count + self.missing

    @property
    def mean(self) -> float | None:
        return self.layout.shift + self.sum / self.count if self.kind == "numeric" and self.count else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1), from the sums."""
        n = self.count
        if self.kind != "numeric" or n < 2:
            return None
        return math.sqrt(max(self.sum_sq - self.sum * self.sum / n, 0.0) / (n - 1))

    def merge(self, other: "Summary") -> "Summary":
        """The summary of both inputs together (exact: counts add, sums add, min of mins, max of maxes)."""
        if other.layout != self.layout:
            raise ValueError(f"feature {self.name!r}: cannot merge summaries on different layouts "
                             "(summarise every window on the same reference profile)")
        mins = [v for v in (self.minimum, other.minimum) if v is not None]
        maxs = [v for v in (self.maximum, other.maximum) if v is not None]
        return Summary(self.layout, tuple(a + b for a, b in zip(self.counts, other.counts)),
                       self.missing + other.missing, stable_float(self.sum + other.sum),
                       stable_float(self.sum_sq + other.sum_sq),
                       min(mins) if mins else None, max(maxs) if maxs else None)

    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "name": self.name, "kind": self.kind, "edges": list(self.layout.edges),
                "probs": list(self.layout.probs),
                "categories": list(self.layout.categories), "shift": self.layout.shift,
                "counts": list(self.counts), "missing": self.missing, "sum": self.sum, "sum_sq": self.sum_sq,
                "min": self.minimum, "max": self.maximum}

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"drift profile format {data.get('format')!r} is not {FORMAT_VERSION}")
        layout = Layout(data["name"], data["kind"], tuple(float(e) for e in data["edges"]),
                        tuple(float(p) for p in data["probs"]), tuple(str(c) for c in data["categories"]), float(data["shift"]))
        return cls(layout, tuple(int(c) for c in data["counts"]), int(data["missing"]), float(data["sum"]),
                   float(data["sum_sq"]), data["min"], data["max"])

    @classmethod
    def from_json_text(cls, text: str) -> "Summary":
        return cls.from_json(json.loads(text))


def merge_all(summaries: list[Summary]) -> Summary:
    """Merge a non-empty list of summaries of one feature (windows into a longer window)."""
    if not summaries:
        raise ValueError("nothing to merge")
    merged = summaries[0]
    for summary in summaries[1:]:
        merged = merged.merge(summary)
    return merged


ARROW_SCHEMA = pa.schema([
    ("format", pa.int32()), ("name", pa.string()), ("kind", pa.string()), ("edges", pa.list_(pa.float64())),
    ("probs", pa.list_(pa.float64())),
    ("categories", pa.list_(pa.string())), ("shift", pa.float64()), ("counts", pa.list_(pa.int64())),
    ("missing", pa.int64()), ("sum", pa.float64()), ("sum_sq", pa.float64()), ("min", pa.float64()),
    ("max", pa.float64()),
])


def summaries_to_arrow(summaries: list[Summary]) -> pa.Table:
    """One row per summary (columns as in :meth:`Summary.to_json`), e.g. to append to a DuckDB table."""
    rows = [s.to_json() for s in summaries]
    return pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)


def summaries_from_arrow(table: pa.Table) -> list[Summary]:
    return [Summary.from_json(row) for row in table.select(ARROW_SCHEMA.names).to_pylist()]
