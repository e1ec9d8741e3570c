"""Connections of certificates that stopped being good are cut (security-audit M11).

OpenSSL checks a client's certificate once, in the handshake; a connection then lives as long as
its client keeps it (HTTP keep-alive, a log stream followed for hours). So the agent remembers
each TLS connection's certificate (`OpenSessions.add`, at the end of its handshake) and, every
CHECK_SEC, reads the PKI files again if they changed and closes the connections whose
certificate the CRL now revokes, has expired, or was issued by a CA that is no longer the
agent's (`pki init --force`). The bound between `pki revoke` and the cut is CHECK_SEC, plus the
time the connection's own request takes to notice (none: it is aborted).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

from joblet_agent.api.tls import PeerCertificate, ServerContexts, peer_certificate

logger = logging.getLogger(__name__)

CHECK_SEC = 2.0  # docs/pki.md: a revoked client's connections are cut within this


@dataclass(frozen=True, slots=True)
class _Session:
    transport: asyncio.Transport
    cert: PeerCertificate

    def why_cut(self, revoked: frozenset[int], ca: bytes | None, now: datetime) -> str | None:
        if self.cert.serial in revoked:
            return "revoked"
        if now > self.cert.not_after:
            return "expired"
        if ca is not None and self.cert.issuer != ca:
            return "issued by a CA the agent no longer has"
        return None


class OpenSessions:
    """The TLS connections open now, each with what its certificate says."""

    def __init__(self) -> None:
        self._open: dict[int, _Session] = {}

    def __len__(self) -> int:
        return len(self._open)

    def add(self, transport: asyncio.Transport) -> None:
        """A connection whose handshake just succeeded (its certificate is verified)."""
        ssl_object = transport.get_extra_info("ssl_object")
        cert = peer_certificate(ssl_object) if ssl_object is not None else None
        if cert is not None:
            self._open[id(transport)] = _Session(transport, cert)

    def cut(self, revoked: frozenset[int], ca: bytes | None, now: datetime | None = None) -> int:
        """Abort the connections whose certificate is no longer good; forget closed ones.
        Returns how many were cut."""
        now = now or datetime.now(UTC)
        cut = 0
        for key, session in list(self._open.items()):
            if session.transport.is_closing():
                del self._open[key]
                continue
            why = session.why_cut(revoked, ca, now)
            if why is None:
                continue
            peer = session.transport.get_extra_info("peername")
            logger.info(
                "tls: closing a connection of %s from %s: its certificate (serial %x) is %s",
                session.cert.name,
                peer,
                session.cert.serial,
                why,
            )
            session.transport.abort()
            del self._open[key]
            cut += 1
        return cut


async def cut_revoked(
    contexts: ServerContexts, sessions: OpenSessions, *, every: float = CHECK_SEC
) -> None:
    """Forever: the PKI files read again if they changed, and the connections of certificates
    no longer good cut."""
    while True:
        await asyncio.sleep(every)
        try:
            contexts.current()
            sessions.cut(contexts.revoked, contexts.ca_subject)
        except (OSError, ValueError, ssl.SSLError) as exc:  # never end the loop
            logger.error("tls: checking open connections against the CRL failed: %s", exc)
