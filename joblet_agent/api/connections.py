"""What one client may hold of the agent's connections, and for how long without progress.

`ConnectionBudget` counts a listener's connections, in all and per peer (a TCP address, a local
user), and refuses one past either cap. `GuardedConnection` stands between a connection and
aiohttp's protocol and closes a connection that makes no progress: one that sends no request
(idle), one whose request line and headers do not arrive in time (header), and one whose
request body stops arriving while the handler waits for it (body). aiohttp 3.8 (Debian 12) has
none of these (its keep-alive timer starts only after a first response), 3.14 only the first:
so the agent keeps its own, the same on both.

The request phase comes from `track_requests`, a middleware: it runs when aiohttp has parsed a
request head and ends when the handler has returned, whatever aiohttp's version.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from joblet_agent.api.errors import Handler

logger = logging.getLogger(__name__)

# Refusals are summed up in one line per listener at most this often: a flood must not flood
# the journal too.
REFUSAL_REPORT_SEC = 10.0


def tcp_peer(peername: Any) -> str:
    """The peer a TCP connection counts against: its IPv4 address (IPv4-mapped IPv6 included),
    or its IPv6 /64, since one IPv6 host commonly holds a whole /64 to pick addresses from."""
    host = peername[0] if isinstance(peername, tuple) and peername else str(peername)
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class Ticket:
    """One admitted connection's place in its budget; given back once, however often released."""

    __slots__ = ("_budget", "_peer")

    def __init__(self, budget: ConnectionBudget, peer: str) -> None:
        self._budget: ConnectionBudget | None = budget
        self._peer = peer

    def release(self) -> None:
        if self._budget is not None:
            self._budget.give_back(self._peer)
            self._budget = None


class ConnectionBudget:
    """The connections of one listener: at most `total`, at most `per_peer` of one peer. A peer
    in `exempt` (root on the local socket) is counted but never refused."""

    def __init__(
        self,
        listener: str,
        *,
        total: int,
        per_peer: int,
        exempt: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.listener = listener
        self.total = total
        self.per_peer = per_peer
        self.exempt = exempt
        self._clock = clock
        self._held: Counter[str] = Counter()
        self._count = 0  # of peers not exempt
        self._refused: Counter[str] = Counter()
        self._last_report = float("-inf")

    @property
    def held(self) -> int:
        return sum(self._held.values())

    def admit(self, peer: str) -> Ticket | None:
        exempt = peer in self.exempt
        if not exempt:
            if self._count >= self.total:
                self._refuse(peer, f"{self.total} connections at once on this listener")
                return None
            if self._held[peer] >= self.per_peer:
                self._refuse(peer, f"{self.per_peer} connections at once per peer")
                return None
            self._count += 1
        self._held[peer] += 1
        return Ticket(self, peer)

    def give_back(self, peer: str) -> None:
        self._held[peer] -= 1
        if self._held[peer] <= 0:
            del self._held[peer]
        if peer not in self.exempt:
            self._count -= 1

    def _refuse(self, peer: str, cap: str) -> None:
        self._refused[peer] += 1
        now = self._clock()
        if now - self._last_report >= REFUSAL_REPORT_SEC:
            top = ", ".join(f"{p} ({n})" for p, n in self._refused.most_common(3))
            logger.warning(
                "%s: refused %d connection(s) since the last report, at most %s; most from: %s",
                self.listener,
                sum(self._refused.values()),
                cap,
                top,
            )
            self._refused.clear()
            self._last_report = now


@dataclass(frozen=True, slots=True)
class Deadlines:
    idle_sec: float
    header_sec: float
    body_sec: float


class _Phase(enum.Enum):
    IDLE = "sent no request"  # between requests, or before the first
    HEAD = "did not finish its request line and headers"
    REQUEST = "stopped sending its request body"  # a handler runs


class _Body(Protocol):
    def is_eof(self) -> bool: ...


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection (made by `http` once admitted), behind the three
    deadlines. `admit` decides at connection_made, from the transport (a TLS connection was
    admitted before its handshake and passes its ticket along)."""

    def __init__(
        self,
        http: Callable[[], asyncio.Protocol],
        deadlines: Deadlines,
        admit: Callable[[asyncio.BaseTransport], Ticket | None],
    ) -> None:
        self._http = http
        self._inner: asyncio.Protocol | None = None
        self._deadlines = deadlines
        self._admit = admit
        self._ticket: Ticket | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._phase = _Phase.IDLE
        self._since = 0.0  # the phase's start; in REQUEST, the body's last progress
        self._body: _Body | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.made = False

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's transport while it is open (for TLS, the TLS one)."""
        return self._transport

    # -- asyncio.Protocol, passed on to aiohttp -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self._ticket = self._admit(transport)
        if self._ticket is None:
            transport.abort()  # type: ignore[attr-defined]
            return
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._inner = self._http()
        self._enter(_Phase.IDLE)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        if self._phase is _Phase.IDLE:
            self._enter(_Phase.HEAD)
        elif self._phase is _Phase.REQUEST:
            self._since = self._loop.time()
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._ticket is not None:
            self._ticket.release()
        self._transport = None
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    # -- what track_requests reports ------------------------------------------------------

    def request_started(self, body: _Body) -> None:
        self._body = body
        self._enter(_Phase.REQUEST)

    def request_finished(self) -> None:
        self._body = None
        self._enter(_Phase.IDLE)

    # -- the deadlines --------------------------------------------------------------------

    def _enter(self, phase: _Phase) -> None:
        self._phase = phase
        self._since = self._loop.time()
        if self._transport is not None:
            self._arm(self._since + self._limit())

    def _limit(self) -> float:
        if self._phase is _Phase.IDLE:
            return self._deadlines.idle_sec
        if self._phase is _Phase.HEAD:
            return self._deadlines.header_sec
        return self._deadlines.body_sec

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        """Runs at the phase's deadline; progress since then moves the deadline on."""
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        now = self._loop.time()
        if self._phase is _Phase.IDLE and transport.get_write_buffer_size():
            self._since = now  # a response is still going out: not idle
        elif self._phase is _Phase.REQUEST:
            if self._body is None or self._body.is_eof():
                self._since = now  # the whole request is in: the handler's time is its own
            elif not transport.is_reading():
                self._since = now  # we paused reading (a full buffer), not the client
        deadline = self._since + self._limit()
        if now < deadline:
            self._arm(deadline)
            return
        logger.debug(
            "closing a connection from %s: it %s for %.0f s",
            transport.get_extra_info("peername") or "the local socket",
            self._phase.value,
            self._limit(),
        )
        transport.close()


def guard_of(request: web.BaseRequest) -> GuardedConnection | None:
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, GuardedConnection) else None


@web.middleware
async def track_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tells the connection's guard that a request is being handled, and when it is done."""
    guard = guard_of(request)
    if guard is None:  # not served through a GuardedSite (tests on aiohttp's own server)
        return await handler(request)
    guard.request_started(request.content)
    try:
        return await handler(request)
    finally:
        guard.request_finished()
