"""The job framework's own tables: run history and per-job watermarks."""

from __future__ import annotations

JOB_TABLES = [
    """
    CREATE TABLE IF NOT EXISTS job_runs (
        job VARCHAR NOT NULL,
        window_start TIMESTAMP NOT NULL,   -- first window of the span computed (UTC)
        window_end TIMESTAMP NOT NULL,     -- end of the last window (exclusive)
        reason VARCHAR NOT NULL,           -- scheduled, catch-up, late-data
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP NOT NULL,
        rows_in BIGINT NOT NULL,
        rows_out BIGINT NOT NULL,
        outcome VARCHAR NOT NULL,          -- ok, failed
        error VARCHAR
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS job_state (
        job VARCHAR PRIMARY KEY,
        watermark TIMESTAMP NOT NULL,      -- every window before it is computed
        marks_seen BIGINT NOT NULL,        -- ingest_marks sequence already looked at
        updated_at TIMESTAMP NOT NULL
    )
    """,
]
