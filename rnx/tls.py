"""The client side of Joblet's mutual TLS, and plain words for the ways a handshake fails."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnx.config import Target

try:
    from cryptography.exceptions import InvalidSignature as InvalidSignatureError
except ImportError:  # pragma: no cover - cryptography is optional for rnx
    InvalidSignatureError = ValueError  # type: ignore[assignment,misc]


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Trust only the Joblet CA; present the client certificate; TLS 1.2 at least."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


# What OpenSSL says (often only on the first read, with TLS 1.3) -> what it means to a user.
_EXPLANATIONS = (
    ("certificate expired", "your client certificate has expired; ask for a new one"),
    ("certificate revoked", "your client certificate was revoked"),
    ("unknown ca", "the agent does not trust your client certificate's CA"),
    ("certificate required", "the agent requires a client certificate (cert/key in the config)"),
    ("bad certificate", "the agent refused your client certificate (not yet valid, or damaged)"),
    ("certificate unknown", "the agent refused your client certificate"),
    (
        "certificate verify failed",
        "the agent's certificate is not signed by your ca.crt, or "
        "does not name the address you used",
    ),
    ("wrong version number", "the address does not speak TLS (is it the Joblet TCP port?)"),
)


def explain(error: BaseException) -> str | None:
    text = " ".join(str(part) for part in (error, error.__cause__, error.__context__) if part)
    lowered = text.lower()
    for needle, meaning in _EXPLANATIONS:
        if needle in lowered:
            return meaning
    return None


def diagnose(target: Target) -> str:
    """Why a TLS connection to the agent failed, as far as the client can tell.

    Python's asyncio server drops a connection whose client certificate it refused without
    sending the TLS alert, so the reason cannot come from the agent (its journal has it). The
    client checks what it can itself: its certificate's dates and issuer, then one handshake.
    """
    assert target.address and target.ca and target.cert and target.key
    local = _check_own_certificate(target.cert, target.ca)
    if local:
        return local
    host, _, port = target.address.rpartition(":")
    context = client_context(target.ca, target.cert, target.key)
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host.strip("[]")) as tls,
        ):
            tls.sendall(b"GET /v1/health HTTP/1.1\r\nHost: joblet\r\nConnection: close\r\n\r\n")
            tls.recv(1)  # TLS 1.3 delivers a refused client certificate on the first read
    except (OSError, ssl.SSLError) as exc:
        meaning = explain(exc)
        if meaning:
            return meaning
    return (
        "the agent refused your client certificate during the TLS handshake (revoked, or "
        "not issued by the agent's CA; the agent's journal names the reason)"
    )


def _check_own_certificate(cert_path: Path, ca_path: Path) -> str | None:
    try:
        from cryptography import x509
    except ImportError:  # optional on client machines: the generic message still applies
        return None
    from datetime import UTC, datetime

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"cannot read {cert_path} or {ca_path}: {exc}"
    now = datetime.now(UTC)
    if cert.not_valid_after_utc < now:
        until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        return f"your client certificate has expired (on {until}); ask for a new one"
    if cert.not_valid_before_utc > now:
        since = f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
        return f"your client certificate is not yet valid (not before {since} UTC)"
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignatureError):
        return (
            "your client certificate was not issued by the CA in your ca.crt; the agent "
            "trusts only its own CA"
        )
    return None
