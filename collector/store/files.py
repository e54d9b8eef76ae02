"""Opening a DuckDB file safely: no network, clear one-line refusals, sizes on disk.

Every connection fleetwatch opens goes through :func:`open_database`, which
turns DuckDB's extension auto-install and auto-load off (an air-gapped
gateway must make no connection nobody configured) and names a foreign
file before DuckDB guesses at it::

    con = open_database("fleetwatch.duckdb")               # created if missing
    open_database("notes.txt")      # NotADatabaseError: notes.txt is not a DuckDB database file; ...
    open_database("live.duckdb")    # DatabaseLockedError while a server owns it
"""

from __future__ import annotations

import os

import duckdb

class DatabaseLockedError(RuntimeError):
    """Another process holds the DuckDB file open."""


class NotADatabaseError(ValueError):
    """The path given as the database is not a DuckDB file (a directory, an empty file, SQLite, ...)."""


# DuckDB downloads and loads "known" extensions on demand (a SQLite file as the
# database fetched sqlite_scanner from the internet). Gateways are air-gapped:
# nothing here may open a connection nobody configured, whatever the settings say.
NO_NETWORK_SETTINGS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

_DUCKDB_MAGIC = b"DUCK"  # bytes 8..12 of every DuckDB database file
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _refuse_foreign_file(path: str) -> None:
    """Name what ``path`` is when it is not a DuckDB file, before DuckDB guesses (and reaches for an extension)."""
    if path == ":memory:" or path.startswith(":memory:"):
        return
    if os.path.isdir(path):
        raise NotADatabaseError(f"{path} is a directory, not a DuckDB database file")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except FileNotFoundError:
        return  # DuckDB creates it
    except OSError as exc:
        raise NotADatabaseError(f"cannot read {path}: {exc.strerror}") from None
    if head.startswith(_SQLITE_MAGIC):
        raise NotADatabaseError(f"{path} is a SQLite database, not a DuckDB database file")
    if head[8:12] != _DUCKDB_MAGIC:
        what = "an empty file" if not head else "not a DuckDB database file"
        raise NotADatabaseError(f"{path} is {what}; give the path of a DuckDB file or of one to create")


def open_database(path: str, *, read_only: bool = False, config: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """Open a DuckDB file without network access, turning DuckDB's refusals into clear one-line messages."""
    _refuse_foreign_file(path)
    try:
        return duckdb.connect(path, read_only=read_only, config={**(config or {}), **NO_NETWORK_SETTINGS})
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise DatabaseLockedError(
                f"{path} is already open in another process ({exc}). DuckDB allows one process per file: "
                "stop that process, or read through its read API instead of opening the file."
            ) from None
        raise NotADatabaseError(f"cannot open {path} as a DuckDB database: {str(exc).splitlines()[0]}") from None


def file_bytes(path: str) -> int:
    """Bytes on disk for the database and its write-ahead log."""
    total = 0
    for name in (path, path + ".wal"):
        try:
            total += os.path.getsize(name)
        except OSError:
            pass
    return total


def wal_bytes(path: str) -> int:
    try:
        return os.path.getsize(path + ".wal")
    except OSError:
        return 0


def _load_malloc_trim():
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _load_malloc_trim()


def release_free_memory() -> None:
    """Hand memory freed by the last write back to the OS.

    Each batch allocates and frees tens of MB (decoded columns, Arrow arrays,
    DuckDB's copies) from several threads; glibc keeps the freed pages in
    its per-thread arenas, so without this the resident size drifts far
    above what is live.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
