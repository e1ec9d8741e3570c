"""The sockets PID 1 passed, served as aiohttp sites, each with a connection budget of its own.

The local socket and TCP never share one: a flood of TCP connections fills the TCP budget and
stops there, and the descriptors it may hold are sized (`fit_to_descriptors`) so that the local
socket, where root is never refused, always finds one free. A TCP connection is admitted by its
peer's address before any TLS work is done for it, so a refused one costs an accept() and a
close(); an admitted one has `tls_handshake_timeout` to finish its handshake, with the newest
TLS context there is (none while the host has no PKI: the connection is closed, and served from
the moment `pki init` made one), and is remembered with its certificate once it succeeded, so
that it can be cut if the certificate is revoked (api/revocation.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import resource
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from joblet_agent.api.connections import (
    ConnectionBudget,
    Deadlines,
    GuardedConnection,
    Ticket,
    tcp_peer,
)
from joblet_agent.api.malformed import answer_in_json
from joblet_agent.api.revocation import OpenSessions
from joblet_agent.api.tls import start_tls
from joblet_agent.domain.config import Connections

logger = logging.getLogger(__name__)

# What one connection may cost in descriptors: its socket, and for a log stream the pipe from
# its journalctl and the process's handle. Plus a reserve for everything else the agent holds
# (D-Bus, SQLite, the journal, an upload or runtime being unpacked).
FDS_PER_CONNECTION = 3
FDS_RESERVED = 256
# How many pending connections asyncio accepts per wake-up (it also passes this to listen(),
# which PassedSocket ignores).
ACCEPT_BATCH = 128
ROOT = "uid 0"
NO_PKI_REPORT_SEC = 60.0  # "no PKI" is logged at most this often

HttpProtocol = Callable[[], asyncio.Protocol]
# The newest TLS server context, or None while there is no usable PKI (api/tls.py).
ContextSource = Callable[[], ssl.SSLContext | None]


class PassedSocket(socket.socket):
    """A listening socket PID 1 passed (or `serve --listen` made). asyncio calls listen() again
    on every socket it serves, with its own backlog (aiohttp's sites: 128), which on Linux
    replaces the queue length joblet.socket's Backlog= gave it: the queue connections wait in
    while the agent restarts or is busy. So listen() does nothing here."""

    def listen(self, backlog: int = 0, /) -> None:
        del backlog


class GuardedSite(web.BaseSite):
    """A listening socket whose connections get the protocol `connection(http)` makes, where
    `http` makes aiohttp's protocol for the runner's application; `budget` counts them."""

    __slots__ = ("_connection", "_name", "_sock", "budget")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        connection: Callable[[HttpProtocol], asyncio.Protocol],
        *,
        budget: ConnectionBudget,
        name: str,
    ) -> None:
        super().__init__(runner, backlog=ACCEPT_BATCH)
        self._sock = sock
        self._connection = connection
        self.budget = budget
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        http: Any = self._runner.server
        assert http is not None

        def json_errors() -> asyncio.Protocol:
            return answer_in_json(http())

        self._server = await asyncio.get_running_loop().create_server(
            lambda: self._connection(json_errors), sock=self._sock, backlog=self._backlog
        )


def deadlines(limits: Connections) -> Deadlines:
    return Deadlines(
        idle_sec=limits.idle_timeout_sec,
        header_sec=limits.header_timeout_sec,
        body_sec=limits.body_timeout_sec,
    )


def local_site(runner: web.BaseRunner, sock: socket.socket, limits: Connections) -> GuardedSite:
    """The Unix socket: plain HTTP, identity from SO_PEERCRED; counted per local user."""
    budget = ConnectionBudget(
        "local socket",
        total=limits.max_local,
        per_peer=limits.max_local_per_user,
        exempt=frozenset({ROOT}),
    )
    times = deadlines(limits)

    def admit(transport: asyncio.BaseTransport) -> Ticket | None:
        return budget.admit(_local_user(transport))

    return GuardedSite(
        runner,
        sock,
        lambda http: GuardedConnection(http, times, admit),
        budget=budget,
        name=f"unix:{sock.getsockname()}",
    )


def _local_user(transport: asyncio.BaseTransport) -> str:
    sock = transport.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return f"uid {uid}"


def tcp_site(
    runner: web.BaseRunner,
    sock: socket.socket,
    limits: Connections,
    context: ssl.SSLContext | ContextSource,
    sessions: OpenSessions | None = None,
) -> GuardedSite:
    """TCP: admitted by peer address, then mutual TLS with a handshake deadline; each
    connection's certificate remembered in `sessions`."""
    source: ContextSource = context if callable(context) else lambda: context
    no_pki = _NoPkiReport()
    port = sock.getsockname()[1]
    budget = ConnectionBudget(
        f"TCP port {port}", total=limits.max_tcp, per_peer=limits.max_tcp_per_peer
    )
    times = deadlines(limits)
    return GuardedSite(
        runner,
        sock,
        lambda http: _TlsGate(
            http,
            budget,
            times,
            context=source,
            handshake_timeout=limits.tls_handshake_timeout_sec,
            sessions=sessions,
            no_pki=no_pki,
        ),
        budget=budget,
        name=f"https://*:{port}",
    )


class _TlsGate(asyncio.Protocol):
    """A TCP connection's first protocol: admits it, then hands it to TLS and, once the
    handshake is over, to a GuardedConnection."""

    def __init__(
        self,
        http: HttpProtocol,
        budget: ConnectionBudget,
        times: Deadlines,
        *,
        context: ContextSource,
        handshake_timeout: float,
        sessions: OpenSessions | None,
        no_pki: _NoPkiReport,
    ) -> None:
        self._http = http
        self._no_pki = no_pki
        self._budget = budget
        self._times = times
        self._context = context
        self._handshake_timeout = handshake_timeout
        self._sessions = sessions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        ticket = self._budget.admit(tcp_peer(peer))
        if ticket is None:
            transport.abort()
            return
        context = self._context()
        if context is None:
            self._no_pki.report(peer)
            ticket.release()
            transport.abort()
            return
        guard = GuardedConnection(self._http, self._times, lambda _transport: ticket)
        handshake = start_tls(transport, guard, context, handshake_timeout=self._handshake_timeout)
        handshake.add_done_callback(
            functools.partial(_handshake_over, guard, ticket, self._sessions)
        )


class _NoPkiReport:
    """A TCP connection closed for want of a PKI, logged once a minute at most."""

    def __init__(self) -> None:
        self._last = float("-inf")

    def report(self, peer: object) -> None:
        now = time.monotonic()
        if now - self._last >= NO_PKI_REPORT_SEC:
            self._last = now
            logger.warning(
                "TCP connection from %s closed: this host has no usable PKI yet; "
                "`joblet-agent pki init` makes one (no restart needed)",
                peer,
            )


def _handshake_over(
    guard: GuardedConnection,
    ticket: Ticket,
    sessions: OpenSessions | None,
    handshake: asyncio.Future[None],
) -> None:
    failed = handshake.cancelled() or handshake.exception() is not None
    # (a failure is seen: tls.report_handshake_failures logs the refused ones)
    if not guard.made:
        ticket.release()  # the handshake failed: the guard never had the connection
    elif not failed and sessions is not None and guard.transport is not None:
        sessions.add(guard.transport)


def fit_to_descriptors(limits: Connections) -> Connections:
    """The caps, lowered if the agent may not open enough descriptors for all of them (a
    development run under a shell's 1024, say): the local socket must find one free."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = (limits.max_tcp + limits.max_local) * FDS_PER_CONNECTION + FDS_RESERVED
    if soft < need and (hard == resource.RLIM_INFINITY or soft < hard):
        wanted = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (OSError, ValueError) as exc:  # joblet.service's seccomp filter refuses it
            logger.debug("cannot raise RLIMIT_NOFILE to %d: %s", wanted, exc)
    if soft >= need:
        return limits
    room = max(soft - FDS_RESERVED, 2 * FDS_PER_CONNECTION) // FDS_PER_CONNECTION
    share = room / (limits.max_tcp + limits.max_local)
    max_tcp = max(1, int(limits.max_tcp * share))
    max_local = max(1, int(limits.max_local * share))
    fitted = dataclasses.replace(
        limits,
        max_tcp=max_tcp,
        max_tcp_per_peer=min(limits.max_tcp_per_peer, max_tcp),
        max_local=max_local,
        max_local_per_user=min(limits.max_local_per_user, max_local),
    )
    logger.warning(
        "the agent may open %d file descriptors, too few for connections.max_tcp=%d and "
        "max_local=%d; serving at most %d TCP and %d local connections (raise LimitNOFILE= "
        "of joblet.service)",
        soft,
        limits.max_tcp,
        limits.max_local,
        fitted.max_tcp,
        fitted.max_local,
    )
    return fitted
