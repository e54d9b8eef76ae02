"""Named queries: the read API's fixed, parameterised questions, and how they bind.

A named query is SQL written once, here, with DuckDB ``$name``
placeholders; callers send only parameter values, which are parsed by
their declared type and bound by DuckDB, never pasted into the text::

    query = CATALOG["device_spans"]                  # analytics.api.catalog
    bound = query.bind({"device_id": "cam-0001", "since": "-1h"})
    bound.sql       # still holds $device_id / $since
    bound.params    # {"device_id": "cam-0001", "since": datetime(...), "until": datetime(...)}

An unknown parameter, a missing required one or a bad value raises
:class:`BadParameter` naming it. Grouping choices that must change the SQL
itself (``group_by``) are declared as ``choice`` parameters whose every
value maps to a fixed fragment; the fragment, never the caller's text,
goes into the statement.

docs/api.md lists every query with an example; a test runs each example.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from analytics.api.params import BadParameter, Param
from analytics.times import utc_naive


@dataclass(frozen=True)
class NamedQuery:
    """One named query: its SQL, parameters and (optional) fixed fragments per choice."""

    name: str
    doc: str
    sql: str
    params: tuple[Param, ...] = ()
    fragments: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Fragments that depend on several values (e.g. the rollup table for a
    # time range): a function of the bound values returning fixed texts.
    derive: Callable[[dict], dict[str, str]] | None = None
    # Work SQL says badly (quantiles from histogram columns), on the result.
    postprocess: Callable[[pa.Table, dict], pa.Table] | None = None
    # The schema owner whose tables it reads besides the collector's (analytics
    # rollups): served only where that schema exists.
    needs: str | None = None

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"query {self.name}: duplicate parameter names")
        for param_name, by_choice in self.fragments.items():
            param = next((p for p in self.params if p.name == param_name), None)
            if param is None or param.kind != "choice" or set(by_choice) != set(param.choices):
                raise ValueError(f"query {self.name}: fragments for {param_name!r} must cover its choices")

    def bind(self, raw: Mapping[str, str], now: datetime | None = None) -> BoundQuery:
        """The statement, its DuckDB parameters and every parsed value, for query-string ``raw``."""
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise BadParameter(f"unknown parameter {unknown[0]!r} for query {self.name!r} (parameters: {allowed})")
        bound = {p.name: p.parse(raw.get(p.name), now) for p in self.params}
        sql = self.sql
        texts = {name: self.fragments[name][bound[name]] for name in self.fragments}
        if self.derive is not None:
            texts.update(self.derive(bound))
        if texts:
            sql = sql.format(**texts)
        used = set(re.findall(r"\$([a-z][a-z0-9_]*)", sql))
        # Only the placeholders the statement uses are bound (DuckDB refuses extras);
        # times go in as naive UTC so DuckDB never applies its session time zone.
        return BoundQuery(self, sql, {name: utc_naive(value) for name, value in bound.items() if name in used},
                          bound)



    def describe(self) -> dict:
        return {"name": self.name, "doc": self.doc, "params": [p.describe() for p in self.params]}


@dataclass(frozen=True)
class BoundQuery:
    """A named query ready to run: ``sql`` with ``params`` for DuckDB, ``values`` as parsed."""

    query: NamedQuery
    sql: str
    params: dict
    values: dict

    def finish(self, table: pa.Table) -> pa.Table:
        """The result as callers see it (after the query's ``postprocess``, if any)."""
        return self.query.postprocess(table, self.values) if self.query.postprocess else table


def registry(queries) -> dict[str, NamedQuery]:
    """Queries by name; refuses two queries with one name."""
    out: dict[str, NamedQuery] = {}
    for query in queries:
        if query.name in out:
            raise ValueError(f"two named queries are called {query.name!r}")
        out[query.name] = query
    return out

