"""HTTPS for the simulator: a throwaway certificate authority and a server certificate.

The real gateway serves a self-signed certificate on localhost, and the loader must verify TLS
by default, so the simulator does the same: each run makes a fresh CA (with `trustme`), issues a
certificate for 127.0.0.1, ::1 and localhost, and writes the CA certificate to a file a client can
trust. A client that does not trust that file must fail verification, exactly as against the
real gateway. Keys stay in memory; only the public CA certificate is written to disk.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsMaterial:
    """A server SSL context and the path of the CA certificate that verifies it."""

    server_context: ssl.SSLContext
    ca_file: Path


def make_tls(directory: Path | None = None) -> TlsMaterial:
    """Create a CA and a server certificate; write ``ca.pem`` into ``directory`` (a new temporary
    directory if None) and return the server context with the CA file's path."""
    ca = trustme.CA(organization_name="ib-pipeline gateway simulator")
    cert = ca.issue_cert(*SERVER_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    folder = directory or Path(tempfile.mkdtemp(prefix="ib-sim-tls-"))
    folder.mkdir(parents=True, exist_ok=True)
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TlsMaterial(server_context=context, ca_file=ca_file)
