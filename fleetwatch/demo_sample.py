"""The demo's sample fleet, replayed so that it ends now: the shift, kept in the file, and the load.

The shipped sample is a recording of two days in November 2026. Loaded as
it is, every SLO group would look silent today and a dashboard's "last 24 h"
would be empty, so ``fleetwatch demo`` moves every time of the sample by
one offset, a whole number of minutes that makes it end at the current
minute. The offset is chosen at the first load and kept in the file
(``fleetwatch_meta``) before anything is loaded, so a second demo on the
same file, or one resumed after a Ctrl-C, moves the rest of the sample by
the same offset and loads nothing twice::

    shift = demo_shift(db, shipped(SAMPLE_FILE))   # the file's, or a new one, then kept in the file
    ingest_request_log(db, shipped(SAMPLE_FILE), config, shift=shift, progress=sys.stderr)
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from importlib.resources import files

from collector.store.files import open_database

SAMPLE_FILE = "fleet-sample.otlp.zst"  # in the sample_data package
DEMO_CONFIG = "demo.yaml"  # in the sample_data package: the analytics the demo runs
SHIFT_KEY = "demo.time_shift_ns"
# Whole minutes keep the minute windows (rollups, SLIs) as they were. Whole hours would keep the hourly
# ones too, but the sample would then end up to an hour before the demo starts, and the freshness SLO
# pages every site once its devices have been silent for 15 minutes.
SHIFT_UNIT = timedelta(minutes=1)


def shipped(name: str) -> str:
    """Path of a file shipped in the sample_data package."""
    return str(files("sample_data").joinpath(name))


def demo_config(path: str | None = None):
    """The demo's config: ``path``, or the shipped sample_data/demo.yaml with its SLO file found beside it."""
    import yaml

    from collector.config import ConfigError, config_from_dict, load_config

    if path is not None:
        return load_config(path)
    data = yaml.safe_load(open(shipped(DEMO_CONFIG)).read())
    slos = data.get("analytics", {}).get("slos")
    if slos is None or os.path.isabs(slos):
        raise ConfigError(f"{shipped(DEMO_CONFIG)}: analytics.slos must name the SLO file beside it")
    data["analytics"]["slos"] = shipped(slos)
    return config_from_dict(data)


def stored_shift(db_path: str) -> timedelta | None:
    """The shift kept in the file by an earlier demo; None for a new file or one without it."""
    if not os.path.exists(db_path):
        return None
    con = open_database(db_path, read_only=True)
    try:
        if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'fleetwatch_meta'").fetchone()[0]:
            return None
        row = con.execute("SELECT value FROM fleetwatch_meta WHERE key = ?", [SHIFT_KEY]).fetchone()
    finally:
        con.close()
    return None if row is None else timedelta(microseconds=int(row[0]) // 1000)


def keep_shift(db_path: str, shift: timedelta) -> None:
    """Record ``shift`` in the file (creating it), before the load that uses it."""
    con = open_database(db_path)
    try:
        # The same definition as the collector's schema: its migration finds the table and keeps it.
        con.execute("CREATE TABLE IF NOT EXISTS fleetwatch_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.execute("INSERT INTO fleetwatch_meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    [SHIFT_KEY, str(shift // timedelta(microseconds=1) * 1000)])
    finally:
        con.close()


def demo_shift(db_path: str, sample_path: str, now: datetime | None = None) -> timedelta:
    """The file's shift if it has one; else a new one that ends the sample at ``now``'s minute, kept in the file."""
    from collector.store.bulk import shift_to

    shift = stored_shift(db_path)
    if shift is None:
        shift = shift_to(sample_path, now or datetime.now(timezone.utc), whole=SHIFT_UNIT)
        keep_shift(db_path, shift)
    return shift


def describe_shift(shift: timedelta) -> str:
    """``"moved 28 days 3 h 25 min later"``, for the progress line."""
    minutes = shift // timedelta(minutes=1)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} day{'s' * (days != 1)}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes or not parts else []
    return "moved " + " ".join(parts) + " later"
