"""TLS for the agent's API: mutual TLS against the Joblet CA only, with a CRL that is re-read live.

OpenSSL does all verification during the handshake: the chain to the Joblet CA, the validity
window, the key usages and the CRL. The agent only reads the verified subject afterwards
(`peer_identity`): CN is the client's name, OU its role.

Revocation without a restart: Python cannot swap the CRL inside a live SSLContext, but the
server-name callback runs on every ClientHello (with or without SNI) and may move the connection
to another SSLContext before the client's certificate is verified. So `server_context` returns a
context whose callback hands each new connection the context built from the newest files.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.pki.authority import crl_next_update, not_valid_after

logger = logging.getLogger(__name__)

# Warn this long before the CRL's next update: after it, OpenSSL refuses every client.
_CRL_WARNING = timedelta(days=7)
_Stamp = tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class _PkiFiles:
    ca: Path
    cert: Path
    key: Path
    crl: Path

    @classmethod
    def of(cls, pki_dir: Path) -> _PkiFiles:
        return cls(
            ca=pki_dir / "ca.crt",
            cert=pki_dir / "server.crt",
            key=pki_dir / "server.key",
            crl=pki_dir / "crl.pem",
        )

    def stamp(self) -> _Stamp:
        """What changes when any file is replaced (a rename gives a new inode and mtime)."""
        stamps = []
        for path in (self.ca, self.cert, self.key, self.crl):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
                continue
            stamps.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(stamps)


def server_context(pki_dir: Path) -> ssl.SSLContext:
    """The agent's TLS server context: client certificates from the Joblet CA only, CRL checked.

    A new crl.pem (or CA or server certificate) applies to every connection made after it was
    written, through the context's server-name callback. Settings made on the returned context
    later (ALPN, ciphers) do not carry over to reloaded contexts: add them to
    _build_server_context instead. The agent itself asks ServerContexts for the newest context
    for each connection, and cuts connections whose certificate is revoked meanwhile
    (api/revocation.py).
    """
    contexts = ServerContexts(pki_dir)
    first = contexts.current()
    if first is None:
        raise JobletError(
            ErrorCode.CONFIG,
            f"{pki_dir}: cannot load the TLS certificate, key, CA or CRL: {contexts.problem}",
            hint="create them with `joblet-agent pki init`",
        )
    first.sni_callback = contexts.on_client_hello
    return first


class ServerContexts:
    """The newest server context, rebuilt when the PKI files change on disk; None while there is
    no usable PKI (the agent serves TCP from the moment `pki init` made one: no restart)."""

    def __init__(self, pki_dir: Path) -> None:
        self.pki_dir = pki_dir
        self._files = _PkiFiles.of(pki_dir)
        self._lock = threading.Lock()  # asyncio needs none, but a threaded server may share it
        self._stamp: _Stamp | None = None
        self._context: ssl.SSLContext | None = None
        self.problem = "not loaded yet"  # why there is no context, while there is none
        self.revoked: frozenset[int] = frozenset()  # serials the loaded CRL revokes
        self.ca_subject: bytes | None = None  # the loaded CA's name (DER): it issued every client

    def on_client_hello(
        self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext
    ) -> None:
        fresh = self.current()
        if fresh is not None and fresh is not context:
            ssl_object.context = fresh

    def current(self) -> ssl.SSLContext | None:
        """The newest context (after `stat`s of four files: a changed one is read again)."""
        stamp = self._files.stamp()
        with self._lock:
            if stamp != self._stamp:
                # Remember the stamp even if the build fails: retry when the files change again,
                # not on every connection.
                self._stamp = stamp
                self._reload()
            return self._context

    def _reload(self) -> None:
        try:
            context, revoked, ca_subject = _build_server_context(self._files)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.problem = str(exc)
            if self._context is None:
                logger.info("tls: no usable PKI in %s yet (%s)", self.pki_dir, exc)
                return
            # pki writes atomically, so this is a hand edit gone wrong: the previous files are
            # still valid, and refusing every client would turn a typo into an outage.
            logger.error("tls: keeping the previous PKI files; the new ones do not load: %s", exc)
            return
        first = self._context is None
        self._context, self.revoked, self.ca_subject = context, revoked, ca_subject
        if first:
            logger.info("tls: serving TCP with the PKI in %s", self.pki_dir)
        else:
            logger.info("tls: reloaded the CA, server certificate and CRL from %s", self.pki_dir)
        _warn_if_ca_key_visible(self.pki_dir)


def _build_server_context(
    files: _PkiFiles,
) -> tuple[ssl.SSLContext, frozenset[int], bytes]:
    """The context, the serials its CRL revokes, and its CA's subject (DER)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.cert, files.key)
    context.load_verify_locations(cafile=files.ca)  # the Joblet CA and nothing else
    context.load_verify_locations(cafile=files.crl)  # a PEM CRL loads like a CA file
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    # A resumed session skips certificate verification, so a revoked client could resume one
    # opened before the revocation: issue no session tickets.
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    crl = x509.load_pem_x509_crl(files.crl.read_bytes())
    _warn_if_crl_stale(files.crl, crl)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    return context, frozenset(entry.serial_number for entry in crl), ca.subject.public_bytes()


def _warn_if_ca_key_visible(pki_dir: Path) -> None:
    """joblet.service hides the CA's key (pki/store.py keeps it in ca/) from the agent: say so
    when it is in sight all the same (a unit without that line, another pki_dir)."""
    for key in (pki_dir / "ca" / "ca.key", pki_dir / "ca.key"):
        if os.access(key, os.R_OK):
            logger.warning(
                "tls: the agent can read the CA's private key %s: whoever takes over the agent "
                "could mint certificates (joblet.service's InaccessiblePaths= hides it)",
                key,
            )


def _warn_if_crl_stale(path: Path, crl: x509.CertificateRevocationList) -> None:
    next_update = crl_next_update(crl)
    if next_update is not None and next_update - datetime.now(UTC) < _CRL_WARNING:
        logger.warning(
            "tls: %s expires at %s; after that every client is refused. "
            "Run `joblet-agent pki renew-crl`.",
            path,
            next_update.isoformat(),
        )


def report_handshake_failures() -> None:
    """Make asyncio tell a refused TLS peer why, and log it. Call once at start-up; idempotent.

    asyncio closes the transport of a failed handshake without sending the alert OpenSSL has
    queued ("certificate revoked", "unknown ca", ...), and logs nothing outside debug mode
    (CPython gh-98078, fixed upstream by python/cpython#153620). A refused client then sees the
    connection drop with no reason. This wraps SSLProtocol._on_handshake_complete to flush the
    alert first, as the upstream fix does; flushing twice is harmless on a Python with the fix.
    """
    from asyncio import sslproto

    protocol: Any = sslproto.SSLProtocol
    original = getattr(protocol, "_on_handshake_complete", None)
    if original is None or not hasattr(protocol, "_process_outgoing"):
        logger.warning("tls: asyncio's SSLProtocol changed; refused clients get no TLS alert")
        return
    if getattr(original, "_joblet_reports", False):
        return

    @functools.wraps(original)
    def on_handshake_complete(self: Any, handshake_exc: BaseException | None) -> None:
        # Only OpenSSL's own failures queue an alert; timeouts and lost connections do not.
        if isinstance(handshake_exc, ssl.SSLError) and self._transport is not None:
            self._process_outgoing()
            peer = self._transport.get_extra_info("peername")
            reason = getattr(handshake_exc, "verify_message", None) or handshake_exc.reason
            logger.info("tls: handshake with %s failed: %s", peer, reason)
        original(self, handshake_exc)

    on_handshake_complete._joblet_reports = True  # type: ignore[attr-defined]
    protocol._on_handshake_complete = on_handshake_complete


# asyncio's SSLProtocol reads into a buffer of 256 KiB it allocates (and zero-fills) for every
# connection when the connection is made, before a byte of the handshake: a thousand clients
# that never send a ClientHello pinned 256 MiB of the agent (measured in the sandbox). A TLS
# record is at most 16 KiB; two records per read keeps bulk uploads fast.
TLS_READ_BUFFER = 32 * 1024


@functools.cache
def _server_side_protocol() -> type[Any]:
    from asyncio import sslproto

    class ServerSide(sslproto.SSLProtocol):
        max_size = TLS_READ_BUFFER

    return ServerSide


def start_tls(
    raw: asyncio.Transport,
    app_protocol: asyncio.Protocol,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float,
) -> asyncio.Future[None]:
    """Start the server side of TLS on a connection just accepted (from its protocol's
    connection_made); returns a future that ends with the handshake.

    What loop.start_tls() does, with a smaller read buffer, and with the app protocol's
    connection_made called by the TLS layer as soon as the handshake is over (as create_server
    does), before any request bytes reach it. On failure or timeout the connection is closed,
    the future holds the exception and `app_protocol` never hears of the connection.
    """
    loop = asyncio.get_running_loop()
    handshake: asyncio.Future[None] = loop.create_future()
    tls = _server_side_protocol()(
        loop,
        app_protocol,
        context,
        handshake,
        server_side=True,
        ssl_handshake_timeout=handshake_timeout,
        # A client that does not answer our close_notify is let go after as long.
        ssl_shutdown_timeout=handshake_timeout,
    )
    # As loop.start_tls(): the transport's reader was armed for the plain protocol; pause it,
    # hand the connection to TLS, and read again on the next turn of the loop.
    raw.pause_reading()
    raw.set_protocol(tls)
    tls.connection_made(raw)
    loop.call_soon(raw.resume_reading)
    return handshake


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[str, tuple[str, ...]]:
    """(CN, OUs) of the peer's certificate, which the handshake has already verified."""
    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        raise JobletError(ErrorCode.UNAUTHENTICATED, "the client presented no certificate")
    subject = x509.load_der_x509_certificate(der).subject
    names = [str(a.value) for a in subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if len(names) != 1:
        raise JobletError(
            ErrorCode.UNAUTHENTICATED,
            f"a client certificate needs exactly one CN, this one has {len(names)}",
        )
    units = subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return names[0], tuple(str(a.value) for a in units)


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """What the agent keeps of a verified client certificate while its connection is open."""

    name: str  # the CN
    serial: int
    issuer: bytes  # the issuer's name, DER
    not_after: datetime


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> PeerCertificate | None:
    der = ssl_object.getpeercert(binary_form=True)
    if der is None:
        return None
    cert = x509.load_der_x509_certificate(der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return PeerCertificate(
        name=str(names[0].value) if names else "?",
        serial=cert.serial_number,
        issuer=cert.issuer.public_bytes(),
        not_after=not_valid_after(cert),
    )


def client_context(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """A client context that trusts only `ca` and presents `cert`; checks the server's name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context
