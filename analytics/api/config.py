"""The read API's config section (``api:`` in the YAML), with defaults and validation.

::

    api:
      endpoint: 127.0.0.1:4319      # its own listener, apart from the OTLP ports
      tls: {cert_file: api.crt, key_file: api.key}
      read_tokens_file: /etc/fleetwatch/read-tokens
      admin_tokens_env: FLEETWATCH_ADMIN_TOKENS   # admin tokens may also run ad-hoc SQL
      max_rows: 10000
      timeout: 10s
      readers: 2
      queue_limit: 8

Without tokens the API answers anyone who can reach it, so validation
refuses a listener that is not on the loopback interface unless read
tokens are configured.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from collector.config import AuthConfig, ConfigError, TlsConfig, parse_endpoint, register_section


@dataclass
class ApiConfig:
    enabled: bool = True
    endpoint: str = "127.0.0.1:4319"
    tls: TlsConfig = field(default_factory=TlsConfig)
    read: AuthConfig = field(default_factory=AuthConfig)
    admin: AuthConfig = field(default_factory=AuthConfig)
    max_rows: int = 10_000
    max_result_mib: float = 64.0
    timeout: float = 10.0
    readers: int = 2
    queue_limit: int = 8
    max_sql_kib: int = 64

    @property
    def read_tokens(self) -> list[str]:
        return self.read.tokens()

    @property
    def admin_tokens(self) -> list[str]:
        return self.admin.tokens()

    @property
    def timeout_seconds(self) -> float:
        return self.timeout

    @property
    def max_result_bytes(self) -> int:
        return int(self.max_result_mib * 1024 * 1024)

    @property
    def max_sql_bytes(self) -> int:
        return self.max_sql_kib * 1024

    def validate(self, key: str = "api") -> None:
        host, _ = parse_endpoint(self.endpoint, f"{key}.endpoint")
        self.tls.validate(f"{key}.tls")
        self.read.validate(f"{key}.read")
        self.admin.validate(f"{key}.admin")
        if not (self.read_tokens or self.admin_tokens) and not _is_loopback(host):
            raise ConfigError(f"{key}.endpoint: {host} is reachable from other hosts; configure "
                              f"{key}.read (and {key}.admin) tokens or listen on 127.0.0.1")
        for name, low, high in (("max_rows", 1, 1_000_000), ("readers", 1, 64), ("queue_limit", 0, 1024),
                                ("max_sql_kib", 1, 1024)):
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{key}.{name}: must be {low}..{high}, got {value}")
        if not 0 < self.timeout <= 3600:
            raise ConfigError(f"{key}.timeout: must be more than 0 s and at most 1h, got {self.timeout:g} s")
        if not 0 < self.max_result_mib <= 4096:
            raise ConfigError(f"{key}.max_result_mib: must be more than 0 and at most 4096")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


register_section("api", ApiConfig, always=True)
