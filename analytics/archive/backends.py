"""How the exporter reaches the DuckDB file: a connection of its own offline, the store's writer in serve.

The exporter needs two things of a file: a cursor for long reads (its
COPY must not hold up the writer) and write transactions::

    backend = FileBackend(open_database("fleet.duckdb"))   # fleetwatch archive export: no server holds it
    backend = StoreBackend(store)                           # inside fleetwatch serve
    backend.read(lambda cur: cur.execute("SELECT 1").fetchall())
    backend.write(lambda con: con.execute("DELETE ..."))    # one transaction, on the writer
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import duckdb

from collector.store.database import Store

T = TypeVar("T")


class Backend(Protocol):
    def read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T: ...
    def write(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T: ...
    def checkpoint(self) -> None: ...


class FileBackend:
    """A file no server holds, on one connection (reads and writes take turns)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return work(self.con)

    def write(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        with Store.transaction(self.con):
            return work(self.con)

    def checkpoint(self) -> None:
        self.con.execute("CHECKPOINT")


class StoreBackend:
    """The file of a running :class:`Store`: reads on a cursor of their own, writes on its write thread."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        cursor = self.store.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    def write(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        def transaction(con: duckdb.DuckDBPyConnection) -> T:
            with Store.transaction(con):
                return work(con)
        return self.store.submit(transaction).result()

    def checkpoint(self) -> None:
        # Nothing to force: the store's own policy checkpoints within a minute of a write (or at the next
        # row-group boundary), and that checkpoint frees the deleted rows as well as a forced one would,
        # without starting a partly filled row group that a later checkpoint must recompress.
        pass
