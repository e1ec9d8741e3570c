"""Connection budgets and deadlines (api/connections.py, api/listeners.py), on real sockets:
aiohttp served through a GuardedSite on a Unix socket, and over TCP with mutual TLS.

The deadlines here are a fraction of a second; each test waits for the agent to close a
connection (or to answer) for at most WAIT seconds, which only tells "closed" from "never".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from joblet_agent.api import listeners
from joblet_agent.api.connections import ConnectionBudget, tcp_peer, track_requests
from joblet_agent.api.listeners import (
    GuardedSite,
    PassedSocket,
    fit_to_descriptors,
    local_site,
    tcp_site,
)
from joblet_agent.api.tls import client_context, server_context
from joblet_agent.domain.config import Connections
from joblet_agent.pki.store import Pki
from rnx.wire import UnixHTTPConnection

WAIT = 5.0
QUICK = Connections(
    max_tcp=4,
    max_tcp_per_peer=2,
    max_local=4,
    max_local_per_user=2,
    tls_handshake_timeout_sec=0.3,
    idle_timeout_sec=0.3,
    header_timeout_sec=0.3,
    body_timeout_sec=0.3,
)


# -- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peername", "peer"),
    [
        (("192.0.2.7", 40000), "192.0.2.7"),
        (("::ffff:192.0.2.7", 40000, 0, 0), "192.0.2.7"),  # IPv4 on a dual-stack socket
        (("2001:db8::1", 40000, 0, 0), "2001:db8::/64"),
        (("2001:db8::ffff:1", 40000, 0, 0), "2001:db8::/64"),  # same /64: same peer
        (("fe80::1%eth0", 40000, 0, 2), "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_a_tcp_peer_is_an_ipv4_address_or_an_ipv6_64(peername: Any, peer: str) -> None:
    assert tcp_peer(peername) == peer


def test_a_budget_caps_each_peer_and_the_listener() -> None:
    budget = ConnectionBudget("test", total=3, per_peer=2)
    a1, a2 = budget.admit("a"), budget.admit("a")
    assert a1 and a2
    assert budget.admit("a") is None  # per peer
    b1 = budget.admit("b")
    assert b1
    assert budget.admit("c") is None  # the listener is full
    a1.release()
    a1.release()  # given back once, however often released
    assert budget.held == 2
    assert budget.admit("c") is not None
    assert budget.admit("d") is None


def test_an_exempt_peer_is_counted_but_never_refused() -> None:
    budget = ConnectionBudget("local", total=1, per_peer=1, exempt=frozenset({"uid 0"}))
    assert budget.admit("uid 1000")
    tickets = [budget.admit("uid 0") for _ in range(5)]
    assert all(tickets)
    assert budget.admit("uid 1001") is None  # root's connections took no other user's place
    assert budget.held == 6
    for ticket in tickets:
        assert ticket
        ticket.release()
    assert budget.held == 1


def test_refusals_are_summed_up_not_logged_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    budget = ConnectionBudget("TCP port 1", total=1, per_peer=1, clock=lambda: now[0])
    budget.admit("a")
    with caplog.at_level(logging.WARNING, logger="joblet_agent.api.connections"):
        for _ in range(1000):
            budget.admit("b")
        now[0] = 11.0
        budget.admit("b")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "refused 1 connection(s)" in lines[0]
    assert "refused 1000 connection(s)" in lines[1]
    assert "b (1000)" in lines[1]


def test_caps_shrink_to_the_descriptors_the_agent_may_open(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 1024))
    with caplog.at_level(logging.WARNING):
        fitted = fit_to_descriptors(Connections())
    room = (1024 - listeners.FDS_RESERVED) // listeners.FDS_PER_CONNECTION
    assert fitted.max_tcp + fitted.max_local <= room
    assert fitted.max_tcp_per_peer <= fitted.max_tcp
    assert fitted.max_local >= 1
    assert "LimitNOFILE" in caplog.text


def test_caps_that_fit_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (65536, 65536))
    assert fit_to_descriptors(Connections()) == Connections()


def test_a_low_soft_limit_is_raised_to_what_the_caps_need(monkeypatch: pytest.MonkeyPatch) -> None:
    raised: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (1024, 524288))
    monkeypatch.setattr(resource, "setrlimit", lambda _which, limits: raised.append(limits))
    assert fit_to_descriptors(Connections()) == Connections()
    assert raised and raised[0][0] >= (1024 + 256) * listeners.FDS_PER_CONNECTION


def test_a_passed_socket_keeps_its_listen_queue(tmp_path: Path) -> None:
    with PassedSocket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "s"))
        socket.socket.listen(sock, 7)
        sock.listen(128)  # what asyncio does: a no-op here, the queue stays 7 long
        clients = []
        try:
            for _ in range(20):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.setblocking(False)
                clients.append(client)
                try:
                    client.connect(str(tmp_path / "s"))
                except BlockingIOError:
                    break  # the queue is full
            # Linux queues backlog + 1 Unix connections; listen(128) would have taken all 20.
            assert len(clients) <= 9
        finally:
            for client in clients:
                client.close()


# -- deadlines, on a real server ------------------------------------------------------------


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hi")


async def _count(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(1.0)  # longer than every deadline: a handler's own time is not idle
    return web.Response(text="done")


def _app() -> web.Application:
    app = web.Application(middlewares=[track_requests])
    app.router.add_routes(
        [web.get("/hello", _hello), web.post("/count", _count), web.get("/slow", _slow)]
    )
    return app


@contextlib.asynccontextmanager
async def _serving(
    make_site: Callable[[web.AppRunner], GuardedSite],
) -> AsyncIterator[GuardedSite]:
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = make_site(runner)
    await site.start()
    try:
        yield site
    finally:
        await runner.cleanup()


def _unix_listener(path: Path) -> socket.socket:
    sock = PassedSocket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    socket.socket.listen(sock, 16)
    return sock


def _read_until_closed(sock: socket.socket) -> bytes | None:
    """Everything the server sent until it closed the connection; None if still open."""
    sock.settimeout(WAIT)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except (ssl.SSLError, ConnectionError):
        pass  # a reset, or an EOF without close_notify: closed all the same
    return data


def _unix_client(path: Path, first: bytes = b"") -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    if first:
        sock.sendall(first)
    return sock


def _unix_stalls(path: Path) -> dict[str, bytes | None]:
    silent = _unix_client(path)
    half_head = _unix_client(path, b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    half_body = _unix_client(
        path, b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12"
    )
    served = _unix_client(path, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        return {
            "silent": _read_until_closed(silent),
            "half head": _read_until_closed(half_head),
            "half body": _read_until_closed(half_body),
            "slow handler": _read_until_closed(served),
        }
    finally:
        for sock in (silent, half_head, half_body, served):
            sock.close()


def test_connections_that_stall_are_closed_and_slow_handlers_are_not(tmp_path: Path) -> None:
    async def scenario() -> tuple[dict[str, bytes | None], int]:
        listener = _unix_listener(tmp_path / "api.sock")
        async with _serving(lambda runner: local_site(runner, listener, QUICK)) as site:
            seen = await asyncio.to_thread(_unix_stalls, tmp_path / "api.sock")
            await asyncio.sleep(0.05)
            return seen, site.budget.held

    seen, held = asyncio.run(scenario())
    assert seen["silent"] == b""
    assert seen["half head"] == b""
    assert seen["half body"] == b""  # the handler waited for 8 more bytes that never came
    slow = seen["slow handler"]
    assert slow is not None and slow.startswith(b"HTTP/1.1 200") and slow.endswith(b"done")
    assert held == 0


def test_a_kept_alive_connection_serves_requests_until_it_idles(tmp_path: Path) -> None:
    def client() -> tuple[list[bytes], bytes | None]:
        conn = UnixHTTPConnection(str(tmp_path / "api.sock"), WAIT)
        answers = []
        for body in (b"abc", b"defgh"):
            conn.request("POST", "/count", body=body)
            answers.append(conn.getresponse().read())
        sock = conn.sock
        assert sock is not None  # one connection, kept alive
        try:
            return answers, _read_until_closed(sock)
        finally:
            conn.close()

    async def scenario() -> tuple[list[bytes], bytes | None]:
        listener = _unix_listener(tmp_path / "api.sock")
        async with _serving(lambda runner: local_site(runner, listener, QUICK)):
            return await asyncio.to_thread(client)

    answers, rest = asyncio.run(scenario())
    assert answers == [b"3", b"5"]
    assert rest == b""  # then closed, idle


# -- TCP with mutual TLS ----------------------------------------------------------------------


def _issue(ca: Pki, tmp_path: Path, name: str) -> ssl.SSLContext:
    out = tmp_path / "clients" / name
    ca.issue_client(name, "developer", out_dir=out)
    return client_context(out / "ca.crt", out / "client.crt", out / "client.key")


def _tls_hello(port: int, context: ssl.SSLContext) -> bytes | None:
    """The answer to one request, read until the agent closes the connection (idle); b"" if
    the connection was closed before TLS was up."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            tls = context.wrap_socket(raw, server_hostname="localhost")
        except (ssl.SSLError, ConnectionError):
            return b""
        with tls:
            tls.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            return _read_until_closed(tls)


def _tcp_scenario(ca: Pki, tmp_path: Path) -> dict[str, Any]:
    context = _issue(ca, tmp_path, "alice")
    results: dict[str, Any] = {}

    async def scenario() -> None:
        listener = PassedSocket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        socket.socket.listen(listener, 16)
        port = listener.getsockname()[1]
        limits = dataclasses.replace(QUICK, tls_handshake_timeout_sec=1.0)
        make = lambda runner: tcp_site(runner, listener, limits, server_context(ca.directory))  # noqa: E731
        async with _serving(make) as site:
            silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
            await asyncio.sleep(0.2)
            results["held"] = site.budget.held
            # A third connection from 127.0.0.1 is past the per-peer cap: closed at once.
            results["third"] = await asyncio.to_thread(_tls_hello, port, context)
            results["silent"] = [await asyncio.to_thread(_read_until_closed, s) for s in silent]
            for sock in silent:
                sock.close()
            await asyncio.sleep(0.1)
            results["after handshake timeouts"] = site.budget.held
            results["served"] = await asyncio.to_thread(_tls_hello, port, context)
            await asyncio.sleep(0.1)
            results["at the end"] = site.budget.held

    asyncio.run(scenario())
    return results


def test_tcp_connections_are_capped_per_peer_and_must_finish_tls_in_time(
    ca: Pki, tmp_path: Path
) -> None:
    results = _tcp_scenario(ca, tmp_path)
    assert results["held"] == 2
    assert results["third"] == b""  # refused before TLS: closed at once, never answered
    assert results["silent"] == [b"", b""]  # no ClientHello within the handshake timeout
    assert results["after handshake timeouts"] == 0
    served = results["served"]
    assert served is not None and served.startswith(b"HTTP/1.1 200") and served.endswith(b"hi")
    assert results["at the end"] == 0
