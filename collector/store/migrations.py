"""Versioned schema migrations, each owner (the collector, analytics) with its own sequence.

An owner declares its migrations in order; each is a list of statements.
:func:`migrate` applies the ones a file has not had yet, each in its own
transaction together with its ``schema_migrations`` row, so a crash leaves
a file at a version it names, never between two::

    COLLECTOR = Migrations("collector", [
        Migration(1, "telemetry tables", [...]),
        Migration(2, "log_records", [...]),
    ])
    migrate(con, [COLLECTOR, ANALYTICS])   # -> {"collector": 2, "analytics": 3}

A file written by a newer fleetwatch (a version this code does not know)
stops start-up with a message instead of being written by older code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb

log = logging.getLogger("fleetwatch.store")

MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    description VARCHAR NOT NULL,
    applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (owner, version)
)
"""


class SchemaError(RuntimeError):
    """The file's schema cannot be brought to what this code expects; the message says why."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    # Statements, or a function of the connection for what SQL alone cannot say.
    statements: Sequence[str] | Callable[[duckdb.DuckDBPyConnection], None]


@dataclass(frozen=True)
class Migrations:
    """One owner's migrations, versions 1, 2, 3, ... in order."""

    owner: str
    steps: Sequence[Migration]

    def __post_init__(self) -> None:
        versions = [m.version for m in self.steps]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"{self.owner}: migrations must be numbered 1, 2, 3, ... in order, got {versions}")

    @property
    def latest(self) -> int:
        return len(self.steps)


def migrate(con: duckdb.DuckDBPyConnection, owners: Sequence[Migrations]) -> dict[str, int]:
    """Apply every pending migration of every owner; return each owner's version."""
    con.execute(MIGRATIONS_TABLE)
    versions: dict[str, int] = {}
    for owner in owners:
        current = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations WHERE owner = ?",
                              [owner.owner]).fetchone()[0]
        if current > owner.latest:
            raise SchemaError(f"the file's {owner.owner} schema is version {current}, newer than this "
                              f"fleetwatch knows ({owner.latest}): upgrade fleetwatch to open it")
        for step in owner.steps[current:]:
            con.execute("BEGIN TRANSACTION")
            try:
                if callable(step.statements):
                    step.statements(con)
                else:
                    for statement in step.statements:
                        con.execute(statement)
                con.execute("INSERT INTO schema_migrations (owner, version, description) VALUES (?, ?, ?)",
                            [owner.owner, step.version, step.description])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            log.info("schema %s migrated to version %d: %s", owner.owner, step.version, step.description)
        versions[owner.owner] = owner.latest
    return versions
