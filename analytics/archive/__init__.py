"""The Parquet archive of the raw tables: export, retention, reads through it (docs/archive.md)."""
