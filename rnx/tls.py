"""The client side of Joblet's mutual TLS, and plain words for the ways a handshake fails."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509

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
        "the agent refused your client certificate during the TLS handshake (revoked, not "
        "issued by the agent's CA, or the agent's host has no PKI yet: `joblet-agent pki "
        "init`; the agent's journal names the reason)"
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
    # cryptography < 42 (Debian 12 has 38) has only the naive not_valid_* properties, in UTC.
    if hasattr(cert, "not_valid_before_utc") and hasattr(cert, "not_valid_after_utc"):
        not_before: datetime = cert.not_valid_before_utc
        not_after: datetime = cert.not_valid_after_utc
    else:
        not_before = cert.not_valid_before.replace(tzinfo=UTC)
        not_after = cert.not_valid_after.replace(tzinfo=UTC)
    if not_after < now:
        return f"your client certificate has expired (on {not_after:%Y-%m-%d}); ask for a new one"
    if not_before > now:
        since = f"{not_before:%Y-%m-%d %H:%M}"
        return f"your client certificate is not yet valid (not before {since} UTC)"
    try:
        _verify_directly_issued_by(cert, ca)
    except (ValueError, TypeError, InvalidSignatureError):
        return (
            "your client certificate was not issued by the CA in your ca.crt; the agent "
            "trusts only its own CA"
        )
    return None


def _verify_directly_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    """cert.verify_directly_issued_by(ca), which cryptography 40 added (Debian 12 has 38).

    Like it, raises ValueError when the names differ, TypeError for a key type it cannot check
    (only EC: the Joblet CA is always P-256) and InvalidSignature for a bad signature.
    """
    if hasattr(cert, "verify_directly_issued_by"):
        cert.verify_directly_issued_by(ca)
        return
    from cryptography.hazmat.primitives.asymmetric import ec

    if cert.issuer != ca.subject:
        raise ValueError("the certificate's issuer is not the CA's subject")
    public_key = ca.public_key()
    algorithm = cert.signature_hash_algorithm
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or algorithm is None:
        raise TypeError("only ECDSA-signed certificates of an EC CA can be checked")
    public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
