"""Scheduled analytics jobs: windows computed in DuckDB, replaced atomically, never double-counted."""
