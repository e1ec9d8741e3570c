"""The PKI as it changes under a running agent: served from the moment it exists, and the open
connections of a certificate cut once it is revoked, expired or of a replaced CA
(api/tls.py ServerContexts, api/revocation.py)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web

from joblet_agent.api.connections import track_requests
from joblet_agent.api.listeners import PassedSocket, tcp_site
from joblet_agent.api.revocation import OpenSessions, cut_revoked
from joblet_agent.api.tls import ServerContexts, client_context
from joblet_agent.domain.config import Connections
from joblet_agent.pki.store import Pki

WAIT = 5.0
HELLO = b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"


def _client(pki: Pki, tmp_path: Path, name: str) -> ssl.SSLContext:
    out = tmp_path / "clients" / name
    pki.issue_client(name, "developer", out_dir=out)
    return client_context(out / "ca.crt", out / "client.crt", out / "client.key")


@contextlib.asynccontextmanager
async def _serving(contexts: ServerContexts, sessions: OpenSessions) -> AsyncIterator[int]:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hi")

    app = web.Application(middlewares=[track_requests])
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    listener = PassedSocket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    socket.socket.listen(listener, 16)
    await tcp_site(runner, listener, Connections(), contexts.current, sessions).start()
    try:
        yield listener.getsockname()[1]
    finally:
        await runner.cleanup()


def _connect(port: int, context: ssl.SSLContext) -> ssl.SSLSocket | None:
    """A TLS connection that answered one request, kept open; None if refused."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    try:
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(HELLO)
        answer = tls.recv(65536)
    except (ssl.SSLError, ConnectionError):
        raw.close()
        return None
    if not answer.endswith(b"hi"):
        tls.close()
        return None
    return tls


def _still_answers(tls: ssl.SSLSocket) -> bool:
    try:
        tls.sendall(HELLO)
        return tls.recv(65536).endswith(b"hi")
    except (ssl.SSLError, ConnectionError, TimeoutError):
        return False


def test_a_pki_made_while_serving_is_used_from_the_next_connection(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    contexts, sessions = ServerContexts(pki.directory), OpenSessions()
    assert contexts.current() is None

    async def scenario() -> tuple[bool, bool]:
        async with _serving(contexts, sessions) as port:
            before = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            closed_at_once = await asyncio.to_thread(before.recv, 1) == b""
            before.close()
            pki.init()
            client = _client(pki, tmp_path, "alice")
            tls = await asyncio.to_thread(_connect, port, client)
            served = tls is not None
            if tls is not None:
                tls.close()
            return closed_at_once, served

    assert asyncio.run(scenario()) == (True, True)


def test_connections_of_a_revoked_certificate_are_cut_and_no_others(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.init()
    contexts, sessions = ServerContexts(pki.directory), OpenSessions()
    mallory, alice = _client(pki, tmp_path, "mallory"), _client(pki, tmp_path, "alice")

    async def scenario() -> dict[str, object]:
        async with _serving(contexts, sessions) as port:
            revoked = await asyncio.to_thread(_connect, port, mallory)
            kept = await asyncio.to_thread(_connect, port, alice)
            assert revoked is not None and kept is not None
            await asyncio.sleep(0.1)
            seen = len(sessions)
            untouched = sessions.cut(contexts.revoked, contexts.ca_subject)
            pki.revoke("mallory")
            watcher = asyncio.create_task(cut_revoked(contexts, sessions, every=0.05))
            await asyncio.sleep(0.3)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            result: dict[str, object] = {
                "seen": seen,
                "cut before the revocation": untouched,
                "mallory answered": await asyncio.to_thread(_still_answers, revoked),
                "alice answered": await asyncio.to_thread(_still_answers, kept),
                "mallory again": await asyncio.to_thread(_connect, port, mallory),
            }
            revoked.close()
            kept.close()
            return result

    assert asyncio.run(scenario()) == {
        "seen": 2,
        "cut before the revocation": 0,
        "mallory answered": False,
        "alice answered": True,
        "mallory again": None,
    }


def test_connections_of_an_expired_certificate_or_a_replaced_ca_are_cut(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.init()
    contexts, sessions = ServerContexts(pki.directory), OpenSessions()
    alice = _client(pki, tmp_path, "alice")

    async def two(port: int) -> list[ssl.SSLSocket]:
        made = [await asyncio.to_thread(_connect, port, alice) for _ in range(2)]
        await asyncio.sleep(0.1)
        return [tls for tls in made if tls is not None]

    async def scenario() -> dict[str, int]:
        async with _serving(contexts, sessions) as port:
            opened = await two(port)
            now = datetime.now(UTC)
            cuts = {"valid": sessions.cut(contexts.revoked, contexts.ca_subject, now)}
            later = now + timedelta(days=400)  # alice's certificate is good for 365
            cuts["expired"] = sessions.cut(contexts.revoked, contexts.ca_subject, later)
            opened += await two(port)
            pki.init(force=True)
            contexts.current()
            cuts["of the old CA"] = sessions.cut(contexts.revoked, contexts.ca_subject)
            for tls in opened:
                tls.close()
            return cuts

    assert asyncio.run(scenario()) == {"valid": 0, "expired": 2, "of the old CA": 2}
