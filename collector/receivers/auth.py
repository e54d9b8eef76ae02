"""Bearer-token authentication and TLS settings shared by both receivers.

Usage::

    auth = BearerAuth(["s3cret"])          # empty list: authentication off
    auth.check("Bearer s3cret")            # True
    ssl_context = server_ssl_context(config.receivers.otlp.tls)   # None without TLS

Tokens are compared in constant time against every configured token (so the
time taken does not tell which one nearly matched) and are never logged.
"""

from __future__ import annotations

import hmac
import ssl

from collector.config import TlsConfig


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` values against configured tokens."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> bool:
        if not self._tokens:
            return True
        if not authorization:
            return False
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        candidate = presented.strip().encode()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(candidate, token)
        return matched

    def __repr__(self) -> str:  # never show the tokens
        return f"BearerAuth(<{len(self._tokens)} tokens>)"


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext | None:
    if not tls.enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)  # type: ignore[arg-type]
    except ssl.SSLError as exc:  # OpenSSL's own words ("PEM lib") name neither file nor cause
        raise OSError(f"receivers.otlp.tls: cannot load the certificate {tls.cert_file} with the key {tls.key_file} "
                      f"(not PEM, or the key does not match): {exc}") from None
    return context
