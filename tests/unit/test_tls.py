"""Mutual TLS with real handshakes over 127.0.0.1: who gets in, who is refused, what each side sees.

The refusals are asserted on OpenSSL's reason codes (`SSLError.reason`), the stable part of the
message. With TLS 1.3 the client finishes its handshake before the server has checked the client's
certificate, so a refusal reaches the client only on its first read; with TLS 1.2 the handshake
itself fails. These tests use a blocking `ssl` server, which sends the alert; an asyncio server
does not (CPython gh-98078), see test_asyncio_server_*.

The server speaks first (b"ok" right after the handshake) and the client only reads: a client
that writes first races the server's close and may fail in the write instead (SSLEOFError,
BrokenPipeError), which would make the assertions on the alert flaky.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from asyncio import sslproto
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from joblet_agent.api.tls import (
    client_context,
    peer_identity,
    report_handshake_failures,
    server_context,
)
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.pki.store import Pki
from rnx.tls import _check_own_certificate as check_own_certificate
from rnx.tls import _verify_directly_issued_by as verify_directly_issued_by

TIMEOUT = 5.0
TLS_VERSIONS = [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2]


@dataclass(frozen=True)
class Served:
    """What the server saw of one connection: the verified identity, or why it refused."""

    identity: tuple[str, tuple[str, ...]] | None
    error: BaseException | None


class TlsServer:
    """A blocking TLS server in a thread: handshake, say b"ok", close."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.served: list[Served] = []
        self._accepted = 0
        self._recorded = threading.Condition()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(TIMEOUT)
            with self._recorded:
                self._accepted += 1
            with conn:
                self._record(self._handle(conn))

    def latest(self) -> Served:
        """What the server saw of the latest connection (waits for its thread to record it)."""
        with self._recorded:
            done = self._recorded.wait_for(lambda: len(self.served) == self._accepted, TIMEOUT)
            assert done
            return self.served[-1]

    def _record(self, served: Served) -> None:
        with self._recorded:
            self.served.append(served)
            self._recorded.notify_all()

    def _handle(self, conn: socket.socket) -> Served:
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                served = Served(peer_identity(tls), None)
                tls.sendall(b"ok")
        except (OSError, JobletError) as exc:
            return Served(None, exc)
        return served


@dataclass(frozen=True)
class Outcome:
    """What the client saw: the answer, or the exception and whether the handshake had finished."""

    answer: bytes | None = None
    error: BaseException | None = None
    after_handshake: bool = False

    @property
    def reason(self) -> str | None:
        return getattr(self.error, "reason", None)


def connect(
    port: int,
    context: ssl.SSLContext,
    *,
    server_name: str = "localhost",
    session: ssl.SSLSession | None = None,
) -> tuple[Outcome, ssl.SSLSession | None, bool]:
    """Handshake, then read the server's greeting."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname=server_name, session=session)
        except OSError as exc:
            return Outcome(error=exc), None, False
        with tls:
            try:
                answer = tls.recv(100)
            except OSError as exc:
                return Outcome(error=exc, after_handshake=True), None, False
            return Outcome(answer=answer), tls.session, bool(tls.session_reused)


def client_of(bundle: Path, version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    context = client_context(bundle / "ca.crt", bundle / "client.crt", bundle / "client.key")
    context.maximum_version = version
    return context


@pytest.fixture
def server(ca: Pki) -> Iterator[TlsServer]:
    running = TlsServer(server_context(ca.directory))
    yield running
    running.close()


def issue(
    ca: Pki,
    tmp_path: Path,
    name: str,
    role: str = "developer",
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Path:
    out = tmp_path / "clients" / name
    ca.issue_client(name, role, out_dir=out, not_before=not_before, not_after=not_after)
    return out


def last(server: TlsServer) -> Served:
    return server.latest()


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_valid_client_is_accepted_and_identified(
    ca: Pki, server: TlsServer, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    outcome, _, _ = connect(server.port, client_of(issue(ca, tmp_path, "alice", "admin"), version))
    assert outcome.answer == b"ok"
    assert last(server).identity == ("alice", ("admin",))


def test_ip_address_without_sni_is_accepted(ca: Pki, server: TlsServer, tmp_path: Path) -> None:
    # Clients send no SNI for an IP address; the certificate carries 127.0.0.1 as an IP SAN.
    outcome, _, _ = connect(
        server.port, client_of(issue(ca, tmp_path, "alice")), server_name="127.0.0.1"
    )
    assert outcome.answer == b"ok"


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_no_client_certificate_is_refused(
    ca: Pki, server: TlsServer, version: ssl.TLSVersion
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=ca.ca_crt)
    context.maximum_version = version
    outcome, _, _ = connect(server.port, context)
    assert isinstance(outcome.error, ssl.SSLError)
    if version is ssl.TLSVersion.TLSv1_3:
        assert outcome.after_handshake
        assert outcome.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    else:
        assert not outcome.after_handshake
        assert outcome.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"
    assert isinstance(last(server).error, ssl.SSLError)
    assert getattr(last(server).error, "reason", None) == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_certificate_of_another_ca_is_refused(
    ca: Pki, server: TlsServer, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    other = Pki(tmp_path / "other")
    other.init()
    bundle = issue(other, tmp_path, "mallory", "admin")
    # Trusting the right server (our ca.crt) but presenting a certificate of the other CA.
    context = client_context(ca.ca_crt, bundle / "client.crt", bundle / "client.key")
    context.maximum_version = version
    outcome, _, _ = connect(server.port, context)
    assert outcome.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert outcome.after_handshake is (version is ssl.TLSVersion.TLSv1_3)
    refused = last(server).error
    assert isinstance(refused, ssl.SSLCertVerificationError)
    assert refused.verify_message == "unable to get local issuer certificate"


def test_server_of_another_ca_is_refused_by_the_client(server: TlsServer, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other")
    other.init()
    outcome, _, _ = connect(server.port, client_of(issue(other, tmp_path, "alice")))
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert not outcome.after_handshake
    # The server sends the CA with its own certificate; the client trusts another one.
    assert outcome.error.verify_message == "self-signed certificate in certificate chain"


def test_client_checks_the_server_name(ca: Pki, server: TlsServer, tmp_path: Path) -> None:
    outcome, _, _ = connect(
        server.port, client_of(issue(ca, tmp_path, "alice")), server_name="elsewhere.example"
    )
    assert isinstance(outcome.error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(outcome.error.verify_message)


@pytest.mark.parametrize(
    ("window", "client_reason", "server_message"),
    [
        ((-10, -1), "SSLV3_ALERT_CERTIFICATE_EXPIRED", "certificate has expired"),
        ((1, 10), "SSLV3_ALERT_BAD_CERTIFICATE", "certificate is not yet valid"),
    ],
    ids=["expired", "not-yet-valid"],
)
@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_certificate_outside_its_validity_is_refused(
    ca: Pki,
    server: TlsServer,
    tmp_path: Path,
    version: ssl.TLSVersion,
    window: tuple[int, int],
    client_reason: str,
    server_message: str,
) -> None:
    now = datetime.now(UTC)
    bundle = issue(
        ca,
        tmp_path,
        "carol",
        not_before=now + timedelta(days=window[0]),
        not_after=now + timedelta(days=window[1]),
    )
    outcome, _, _ = connect(server.port, client_of(bundle, version))
    assert outcome.reason == client_reason
    assert outcome.after_handshake is (version is ssl.TLSVersion.TLSv1_3)
    refused = last(server).error
    assert isinstance(refused, ssl.SSLCertVerificationError)
    assert refused.verify_message == server_message


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_revoked_after_start_is_refused_on_the_next_connection(
    ca: Pki, server: TlsServer, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    alice = client_of(issue(ca, tmp_path, "alice"), version)
    bob = client_of(issue(ca, tmp_path, "bob"), version)
    assert connect(server.port, alice)[0].answer == b"ok"

    ca.revoke("alice")  # the server context was created before this

    outcome, _, _ = connect(server.port, alice)
    assert outcome.reason == "SSLV3_ALERT_CERTIFICATE_REVOKED"
    assert outcome.after_handshake is (version is ssl.TLSVersion.TLSv1_3)
    refused = last(server).error
    assert isinstance(refused, ssl.SSLCertVerificationError)
    assert refused.verify_message == "certificate revoked"
    assert connect(server.port, bob)[0].answer == b"ok"
    assert last(server).identity == ("bob", ("developer",))


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_sessions_are_not_resumed(
    ca: Pki, server: TlsServer, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    # A resumed session skips certificate checks, so it would outlive a revocation.
    context = client_of(issue(ca, tmp_path, "alice"), version)
    _, session, _ = connect(server.port, context)
    outcome, _, reused = connect(server.port, context, session=session)
    assert outcome.answer == b"ok"
    assert not reused


def test_new_ca_and_server_certificate_are_picked_up(
    ca: Pki, server: TlsServer, tmp_path: Path
) -> None:
    ca.init(force=True)
    outcome, _, _ = connect(server.port, client_of(issue(ca, tmp_path, "alice")))
    assert outcome.answer == b"ok"


def test_unloadable_new_crl_keeps_the_previous_one(
    ca: Pki, server: TlsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    alice = client_of(issue(ca, tmp_path, "alice"))
    ca.crl.write_text("not a CRL\n")
    with caplog.at_level(logging.ERROR, logger="joblet_agent.api.tls"):
        assert connect(server.port, alice)[0].answer == b"ok"
    assert "keeping the previous PKI files" in caplog.text


def test_server_context_without_files_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(JobletError) as caught:
        server_context(tmp_path / "empty")
    assert caught.value.code is ErrorCode.CONFIG
    assert caught.value.hint is not None
    assert "pki init" in caught.value.hint


def test_server_context_settings(ca: Pki) -> None:
    context = server_context(ca.directory)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    assert context.sni_callback is not None
    # Only the Joblet CA: no system roots sneak in.
    assert [c["subject"] for c in context.get_ca_certs()] == [
        c["subject"] for c in server_context(ca.directory).get_ca_certs()
    ]
    assert len(context.get_ca_certs()) == 1


def test_peer_identity_without_a_certificate(ca: Pki) -> None:
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    permissive.load_cert_chain(ca.server_crt, ca.server_key)
    running = TlsServer(permissive)  # verify_mode CERT_NONE: the client sends no certificate
    try:
        plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        plain.load_verify_locations(cafile=ca.ca_crt)
        connect(running.port, plain)
    finally:
        running.close()
    error = last(running).error
    assert isinstance(error, JobletError)
    assert error.code is ErrorCode.UNAUTHENTICATED


# --- the agent's real setting: an asyncio server --------------------------------------------


async def _serve_asyncio(ca: Pki, tmp_path: Path, version: ssl.TLSVersion) -> dict[str, Outcome]:
    seen: list[tuple[str, tuple[str, ...]]] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        seen.append(peer_identity(writer.get_extra_info("ssl_object")))
        writer.write(b"ok")
        await writer.drain()
        writer.close()
        # The client may already have gone (it reads two bytes and closes): its reset is fine.
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context(ca.directory))
    port = server.sockets[0].getsockname()[1]
    alice = client_of(issue(ca, tmp_path, "alice", "admin"), version)
    bob = client_of(issue(ca, tmp_path, "bob", "reader"), version)
    results = {}
    async with server:
        results["alice"] = (await asyncio.to_thread(connect, port, alice))[0]
        ca.revoke("alice")
        results["alice-revoked"] = (await asyncio.to_thread(connect, port, alice))[0]
        results["bob"] = (await asyncio.to_thread(connect, port, bob))[0]
    # Closing the server does not wait for its connections' handlers (3.11): they are awaited
    # here so that none is left pending when the loop ends.
    await asyncio.gather(*handlers)
    assert seen == [("alice", ("admin",)), ("bob", ("reader",))]
    return results


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_asyncio_server_reloads_the_crl_and_reads_identity(
    ca: Pki, tmp_path: Path, version: ssl.TLSVersion
) -> None:
    results = asyncio.run(_serve_asyncio(ca, tmp_path, version))
    assert results["alice"].answer == b"ok"
    assert results["bob"].answer == b"ok"
    refused = results["alice-revoked"]
    # asyncio closes the connection without sending the TLS alert (CPython gh-98078), so the
    # client cannot tell why: TLS 1.3 sees a plain end of stream after its handshake, TLS 1.2 an
    # EOF inside the handshake. If this starts failing, this Python has the upstream fix.
    if version is ssl.TLSVersion.TLSv1_3:
        assert refused.answer == b""
    else:
        assert isinstance(refused.error, ssl.SSLEOFError)
        assert not refused.after_handshake


@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_asyncio_server_sends_the_alert_once_reporting_is_installed(
    ca: Pki,
    tmp_path: Path,
    version: ssl.TLSVersion,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Restored after the test: the patch is process-wide.
    monkeypatch.setattr(
        sslproto.SSLProtocol, "_on_handshake_complete", sslproto.SSLProtocol._on_handshake_complete
    )
    report_handshake_failures()
    report_handshake_failures()  # idempotent: wrapped once
    with caplog.at_level(logging.INFO, logger="joblet_agent.api.tls"):
        results = asyncio.run(_serve_asyncio(ca, tmp_path, version))
    assert results["alice"].answer == b"ok"
    assert results["bob"].answer == b"ok"
    refused = results["alice-revoked"]
    assert refused.reason == "SSLV3_ALERT_CERTIFICATE_REVOKED"
    assert refused.after_handshake is (version is ssl.TLSVersion.TLSv1_3)
    assert caplog.text.count("failed: certificate revoked") == 1


# --- rnx's own look at its certificate (rnx.tls) --------------------------------------------


class _OldCertificate:
    """The parts of a certificate that rnx reads, without verify_directly_issued_by: what
    cryptography < 40 (Debian 12 has 38) offers."""

    def __init__(self, cert: x509.Certificate, issuer: x509.Name | None = None) -> None:
        self.issuer = cert.issuer if issuer is None else issuer
        self.signature = cert.signature
        self.tbs_certificate_bytes = cert.tbs_certificate_bytes
        self.signature_hash_algorithm = cert.signature_hash_algorithm


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_rnx_checks_its_own_certificate(ca: Pki, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    alice = issue(ca, tmp_path, "alice")
    assert check_own_certificate(alice / "client.crt", alice / "ca.crt") is None
    old = issue(ca, tmp_path, "old", not_before=now - timedelta(days=9), not_after=now)
    assert "has expired" in str(check_own_certificate(old / "client.crt", old / "ca.crt"))
    early = issue(ca, tmp_path, "early", not_before=now + timedelta(days=1))
    assert "not yet valid" in str(check_own_certificate(early / "client.crt", early / "ca.crt"))
    other = Pki(tmp_path / "other")
    other.init()
    refused = check_own_certificate(alice / "client.crt", other.ca_crt)
    assert "not issued by the CA in your ca.crt" in str(refused)


def test_rnx_checks_the_issuer_without_verify_directly_issued_by(ca: Pki, tmp_path: Path) -> None:
    other = Pki(tmp_path / "other")
    other.init()
    ca_cert = _load(ca.ca_crt)
    mine: Any = _OldCertificate(_load(issue(ca, tmp_path, "alice") / "client.crt"))
    verify_directly_issued_by(mine, ca_cert)
    theirs = _load(issue(other, tmp_path, "eve") / "client.crt")
    stranger: Any = _OldCertificate(theirs)
    with pytest.raises(ValueError, match="issuer"):
        verify_directly_issued_by(stranger, ca_cert)
    forged: Any = _OldCertificate(theirs, issuer=ca_cert.subject)
    with pytest.raises(InvalidSignature):
        verify_directly_issued_by(forged, ca_cert)
