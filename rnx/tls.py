"""The client side of Joblet's mutual TLS, and plain words for the ways a handshake fails."""

from __future__ import annotations

import ssl
from pathlib import Path


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
