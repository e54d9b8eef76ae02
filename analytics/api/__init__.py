"""The read API: named queries and guarded ad-hoc SQL over the owner's DuckDB file."""
