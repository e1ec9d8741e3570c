"""One HTTPS request to a live agent over a raw socket, with or without a client certificate.

For the tests that must prove the AGENT refused a client (tests/integration/test_control_plane.py,
tests/deb/checks.py): rnx checks its configuration and the certificates it holds before and after
connecting, so a refusal seen through rnx may be rnx's own. Here the TCP connection is made outside
any error handling (an unreachable agent is an error, not a refusal), and what the agent answered is
kept apart: an HTTP status line, or the TLS alert OpenSSL reports (`SSLError.reason`, e.g.
TLSV13_ALERT_CERTIFICATE_REQUIRED), which only the server sends.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 15.0


@dataclass(frozen=True)
class Answer:
    status_line: str | None  # e.g. "HTTP/1.1 200 OK", when the agent answered over HTTP
    alert: str | None  # OpenSSL's reason for the agent's refusal, e.g. "..._CERTIFICATE_REQUIRED"
    after_handshake: bool  # the refusal came after the client's side of the handshake finished


def context(
    ca: Path, cert: Path | None = None, key: Path | None = None, *, tls13: bool = True
) -> ssl.SSLContext:
    """A client context trusting `ca`, presenting `cert` if given; TLS 1.3, or at most 1.2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key else None)
    if not tls13:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def get(
    host: str, port: int, ctx: ssl.SSLContext, *, path: str = "/v1/health", sni: str = "localhost"
) -> Answer:
    """GET `path`; an SSLError from the server's alert is an answer, anything else raises."""
    raw = socket.create_connection((host, port), timeout=TIMEOUT)  # unreachable: raises, fails
    with raw:
        try:
            tls = ctx.wrap_socket(raw, server_hostname=sni)
        except ssl.SSLCertVerificationError:
            raise  # the CLIENT refused the server: never the agent's refusal
        except ssl.SSLError as exc:
            return Answer(None, exc.reason, after_handshake=False)
        with tls:
            try:
                tls.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode()
                )
                head = tls.recv(4096)  # TLS 1.3: a refusal of the client shows on the first read
            except ssl.SSLError as exc:
                return Answer(None, exc.reason, after_handshake=True)
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    assert line.startswith("HTTP/1.1 "), f"not an HTTP answer: {head[:200]!r}"
    return Answer(line, None, after_handshake=True)


# What the agent's refusal of a client without a certificate looks like to OpenSSL, by version.
NO_CERTIFICATE_ALERTS = {
    True: "TLSV13_ALERT_CERTIFICATE_REQUIRED",  # TLS 1.3: after the client's Finished
    False: "SSLV3_ALERT_HANDSHAKE_FAILURE",  # TLS 1.2: during the handshake
}
