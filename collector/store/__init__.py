"""The owner of a DuckDB file: one write thread, a bounded pool of readers, versioned schemas."""
