"""Read-only checks for ad-hoc SQL, done by DuckDB's own parser.

The read API lets an admin send one SELECT. Whether a text is "one
SELECT over fleetwatch's tables and nothing else" is decided on the parse
tree DuckDB itself would execute, never on the text: ``json_serialize_sql``
serialises SELECT statements only (INSERT, COPY, ATTACH, SET, PRAGMA,
INSTALL, LOAD ... come back as an error), and the tree names every table,
table function and function the statement touches::

    guard = SqlGuard(allowed_tables={"spans", "devices"})
    guard.check("SELECT site, count(*) FROM spans GROUP BY ALL")   # returns the text
    guard.check("SELECT * FROM read_csv('/etc/passwd')")            # raises UnsafeSql

What is refused, and why:

- anything but exactly one statement, and any statement but a SELECT
  (``WITH ... SELECT``, set operations and ``DESCRIBE``/``SUMMARIZE`` of an
  allowed table are SELECTs to DuckDB);
- a table that is not in ``allowed_tables`` or a name the query's own CTEs
  define: this is what stops ``FROM 'file.csv'`` (DuckDB's replacement scan
  reads files named as tables), other catalogs (``other.main.t``) and
  DuckDB's own system tables;
- every table function but a few that only generate rows (``read_csv``,
  ``read_text``, ``glob``, ``query``, ``duckdb_settings`` ... are table
  functions);
- the few scalar functions with a side effect or that reveal settings.

The parse runs on a private in-memory connection: the statement never
comes near the database file until it has passed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator

import duckdb

from collector.store.files import open_database

# Table functions that read nothing but their arguments.
ROW_GENERATORS = frozenset({"range", "generate_series", "unnest"})
# Scalar functions that write (write_log) or expose configuration.
REFUSED_FUNCTIONS = frozenset({"write_log", "current_setting", "getvariable", "getenv"})
MAX_SQL_BYTES = 64 * 1024


class UnsafeSql(ValueError):
    """The statement is not one read-only SELECT over allowed tables; the message says why."""


class SqlGuard:
    """Decides whether an ad-hoc statement may run; see the module docstring."""

    def __init__(self, allowed_tables: Iterable[str]) -> None:
        self.allowed_tables = frozenset(name.lower() for name in allowed_tables)
        if not self.allowed_tables:
            raise ValueError("SqlGuard needs at least one allowed table")
        self._parser = open_database(":memory:", config={"enable_external_access": False})
        self._lock = threading.Lock()

    def check(self, sql: str) -> str:
        """Return ``sql`` unchanged if it may run, else raise :class:`UnsafeSql`."""
        if not isinstance(sql, str) or not sql.strip():
            raise UnsafeSql("the body must be one SELECT statement; it is empty")
        if len(sql.encode()) > MAX_SQL_BYTES:
            raise UnsafeSql(f"the statement is longer than {MAX_SQL_BYTES} bytes")
        tree = self._parse(sql)
        statements = tree.get("statements", [])
        if len(statements) != 1:
            raise UnsafeSql(f"send exactly one statement; this body has {len(statements)}")
        for node, cte_names in _nodes(statements[0]):
            self._check_node(node, cte_names)
        return sql

    def _parse(self, sql: str) -> dict:
        with self._lock:
            try:
                serialised = self._parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
            except duckdb.Error as exc:
                raise UnsafeSql(f"cannot parse the statement: {_first_line(exc)}") from None
        tree = json.loads(serialised)
        if tree.get("error"):
            message = tree.get("error_message", "")
            if "Only SELECT" in message:
                raise UnsafeSql("only a read-only SELECT (or WITH ... SELECT) is allowed")
            raise UnsafeSql(f"cannot parse the statement: {_first_line(message)}")
        return tree

    def _check_node(self, node: dict, cte_names: frozenset[str]) -> None:
        kind = node.get("type")
        if kind == "BASE_TABLE":
            catalog = node.get("catalog_name") or ""
            schema = (node.get("schema_name") or "").lower()
            name = (node.get("table_name") or "").lower()
            if catalog or schema not in ("", "main"):
                raise UnsafeSql(f"only fleetwatch's own tables can be read, not {_dotted(node)}")
            if name not in self.allowed_tables and not (schema == "" and name in cte_names):
                raise UnsafeSql(f"unknown table {node.get('table_name')!r}; readable tables: "
                                + ", ".join(sorted(self.allowed_tables)))
        elif kind == "TABLE_FUNCTION":
            name = _function_name(node.get("function") or {})
            if name not in ROW_GENERATORS:
                raise UnsafeSql(f"table function {name}() is not allowed in ad-hoc SQL")
        elif node.get("class") == "FUNCTION":
            name = _function_name(node)
            if name in REFUSED_FUNCTIONS or (node.get("catalog") or node.get("schema")):
                raise UnsafeSql(f"function {name}() is not allowed in ad-hoc SQL")


def _nodes(value) -> Iterator[tuple[dict, frozenset[str]]]:
    """Every dict in the parse tree with the CTE names in scope there.

    A WITH clause's names are visible only inside the query node that
    declares them; a name defined in a subquery and used outside it is a
    real table (or, to DuckDB, a file to scan), so scope is tracked rather
    than collected query-wide. Iterative, so deep nesting cannot overflow.
    """
    stack: list[tuple[object, frozenset[str]]] = [(value, frozenset())]
    while stack:
        item, scope = stack.pop()
        if isinstance(item, dict):
            cte_map = item.get("cte_map")
            if isinstance(cte_map, dict) and cte_map.get("map"):
                scope = scope | {entry.get("key", "").lower() for entry in cte_map["map"]}
            yield item, scope
            stack.extend((child, scope) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, scope) for child in item)


def _function_name(node: dict) -> str:
    return (node.get("function_name") or "").lower()


def _dotted(node: dict) -> str:
    return ".".join(part for part in (node.get("catalog_name"), node.get("schema_name"),
                                      node.get("table_name")) if part)


def _first_line(message) -> str:
    return str(message).strip().splitlines()[0] if str(message).strip() else "syntax error"
