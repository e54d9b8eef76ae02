"""Which read API the dashboards read, with which token: from the command line or the environment.

``streamlit run dashboards/app.py -- --api http://127.0.0.1:4319 --token T`` (the
arguments after ``--`` are the app's), or the environment::

    FLEETWATCH_API_URL=http://127.0.0.1:4319 FLEETWATCH_API_TOKEN=T streamlit run dashboards/app.py

    settings = Settings.from_sources(sys.argv[1:], os.environ)   # flags win over the environment
    settings.validate()                                          # ValueError naming the bad value
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from analytics.api.client import DEFAULT_URL, ReadApiClient


@dataclass(frozen=True)
class Settings:
    """The dashboards' settings; defaults read a local ``fleetwatch serve`` without a token."""

    api_url: str = DEFAULT_URL
    token: str | None = None
    timeout_s: float = 15.0      # past the server's own 10 s query limit, so its 504 arrives first
    refresh_s: float = 10.0      # the on-call page's self-refresh

    def validate(self) -> None:
        ReadApiClient(self.api_url)  # the client's ValueError names a malformed URL
        if not self.timeout_s > 0:
            raise ValueError(f"the read API timeout must be positive, not {self.timeout_s}")
        if not self.refresh_s >= 1:
            raise ValueError(f"the on-call refresh must be at least 1 s, not {self.refresh_s}")

    @classmethod
    def from_sources(cls, argv: Sequence[str], env: Mapping[str, str]) -> "Settings":
        """Flags in ``argv`` (unknown ones ignored: under pytest argv is pytest's), else ``FLEETWATCH_API_*``."""
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        parser.add_argument("--api")
        parser.add_argument("--token")
        parser.add_argument("--timeout", type=float)
        parser.add_argument("--refresh", type=float)
        flags, _ = parser.parse_known_args(list(argv))
        timeout = flags.timeout if flags.timeout is not None else env.get("FLEETWATCH_API_TIMEOUT")
        refresh = flags.refresh if flags.refresh is not None else env.get("FLEETWATCH_DASHBOARD_REFRESH")
        return cls(api_url=flags.api or env.get("FLEETWATCH_API_URL") or DEFAULT_URL,
                   token=flags.token or env.get("FLEETWATCH_API_TOKEN") or None,
                   timeout_s=float(timeout) if timeout is not None else cls.timeout_s,
                   refresh_s=float(refresh) if refresh is not None else cls.refresh_s)
