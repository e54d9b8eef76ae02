"""A throw-away self-signed TLS certificate for 127.0.0.1 and localhost, made by the openssl command.

Serve with the pair, and trust the certificate as the CA file on the client::

    cert, key = self_signed_certificate(tmp_path)  # tmp_path/gw.crt, tmp_path/gw.key
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "gw.crt", directory / "gw.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key
