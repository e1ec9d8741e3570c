"""H3: connections that never authenticate, or never ask anything, must not take the agent's
file descriptors, its memory or its local socket (security-audit H3, L13).

The attacker needs no certificate: TCP 50051 answers anyone who can reach it. Every connection
here comes from the sandbox's own loopback, which spans 127.0.0.0/8: binding the attacking
sockets to 127.0.0.2 (or to 127.0.0.10-31) gives them peer addresses of their own, so the
per-peer cap meets only the attacker and a certificate holder connecting from 127.0.0.1 (or
::1) is another peer. What each test proves:

- one address floods: the local root socket AND a certificate holder from another address are
  served, and the agent holds no more of the attacker's connections than the per-peer cap;
- many addresses flood (each under the per-peer cap, together past the listener's): the local
  root socket is still served, since the Unix socket has its own budget. A certificate holder
  may be turned away then, until the attacker's handshakes time out: a distributed flood can
  deny the TCP API, never the local socket (docs/security.md says so);
- a certificate holder that completes TLS and then sends nothing, half a request head, or half
  a body is disconnected after the idle, header or body deadline;
- the agent's open descriptors come back down when the flood stops, and after a restart another
  user is served.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from joblet_agent.adapters.config_file import load_config
from joblet_agent.api.tls import client_context
from rnx.config import resolve_target
from tests.integration.conftest import sh
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

PORT = 50051
FLOOD = 1100  # past the default soft limit of 1024 descriptors the old agent ran with
ONE_SOURCE = ["127.0.0.2"]
MANY_SOURCES = [f"127.0.0.{n}" for n in range(10, 32)]  # 22 peers, 50 connections each
# Raw connections the agent holds besides the attacker's (its D-Bus, SQLite, the listening
# sockets, a journal or two, the job being started for another user), as a bound on growth.
OTHER_FDS = 64


def agent_pid() -> int:
    pid = int(sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip() or 0)
    assert pid, "joblet.service has no main process"
    return pid


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


class Flood:
    """Holds `count` TCP connections to the agent that never start TLS, spread over `sources`.
    They are opened a batch at a time, each batch once the one before got through the listen
    queue (a burst past the queue's length would wait for SYN retransmits, 1 s, 3 s, 7 s...);
    a connection the agent closes is opened again (at most twice a second), as an attacker
    keeping the pressure on would."""

    BATCH = 64

    def __init__(self, sources: list[str], count: int) -> None:
        self.count = count
        self.connected = 0  # connects completed, reopened ones included (the kernel's
        # handshake: the agent's accept() comes after)
        self.reopened = 0
        self._to_open = [sources[index % len(sources)] for index in range(count)]
        self._connecting = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flood", daemon=True)

    def __enter__(self) -> Flood:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()

    def wait_connected(self, pid: int) -> None:
        """Until every connection got through at least once and the agent's descriptors
        stopped growing: it has taken what it will of the flood."""
        deadline = time.monotonic() + 60
        while self.connected < self.count and time.monotonic() < deadline:
            time.sleep(0.2)
        last = open_fds(pid)
        while time.monotonic() < deadline:
            time.sleep(1)
            count = open_fds(pid)
            if count <= last:
                return
            last = count

    def _open(self, source: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source, 0))
        sock.connect_ex(("127.0.0.1", PORT))
        self._selector.register(sock, selectors.EVENT_WRITE, source)
        self._connecting += 1

    def _run(self) -> None:
        closed: list[str] = []
        next_reopen = time.monotonic() + 0.5
        while not self._stop.is_set():
            while self._to_open and self._connecting < self.BATCH:
                self._open(self._to_open.pop())
            for key, events in self._selector.select(timeout=0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                if events & selectors.EVENT_WRITE:
                    self._connecting -= 1
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        self.connected += 1
                        self._selector.modify(sock, selectors.EVENT_READ, key.data)
                        continue
                else:
                    with contextlib.suppress(OSError):
                        if sock.recv(1) != b"":
                            continue  # the agent never speaks first; anything else: closed
                self._selector.unregister(sock)
                sock.close()
                closed.append(key.data)
            if closed and time.monotonic() >= next_reopen:
                self._to_open.extend(closed)
                self.reopened += len(closed)
                closed.clear()
                next_reopen = time.monotonic() + 0.5


@pytest.fixture(autouse=True)
def enough_descriptors() -> None:
    """The attacking process itself holds more than 1100 sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * FLOOD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * FLOOD), hard))


@pytest.fixture
def limits() -> Iterator[object]:
    """The connection limits the agent in the sandbox runs with (its joblet.yml, or defaults)."""
    config = load_config()
    yield getattr(config, "connections", None)


def settle_fds(pid: int, ceiling: int, wait: float) -> int:
    """The agent's open descriptors once they fall to `ceiling` (or what they are after `wait`)."""
    deadline = time.monotonic() + wait
    count = open_fds(pid)
    while count > ceiling and time.monotonic() < deadline:
        time.sleep(0.2)
        count = open_fds(pid)
    return count


def held_fds(pid: int) -> tuple[int, int]:
    """(least, most) of the agent's descriptors over 1.5 s. A refused connection is open for
    an instant between accept() and close(); the least is what the agent holds on to."""
    counts = []
    for _ in range(10):
        counts.append(open_fds(pid))
        time.sleep(0.15)
    return min(counts), max(counts)


def run_flood(sources: list[str], *, remote: str | None, limits: object) -> int:
    """Floods from `sources` while root (and `remote`, a certificate holder, if given) run a
    job; checks the agent's descriptors come back down; returns the most it held meanwhile."""
    another_user_runs_a_job()  # the agent is up, and its baseline is taken with it warm
    pid = agent_pid()
    before_fds, before_rss = open_fds(pid), rss_kib(pid)
    with Flood(sources, FLOOD) as flood:
        flood.wait_connected(pid)
        least, most = held_fds(pid)
        during_rss = rss_kib(pid)
        local = another_user_runs_a_job()  # root, over /run/joblet/joblet.sock
        remote_sec = another_user_runs_a_job(remote) if remote else None
        print(
            f"\nflood from {len(sources)} address(es): {FLOOD} connections, {flood.reopened} "
            f"reopened after the agent closed them; agent fds {before_fds} -> {least}..{most}, "
            f"RSS {before_rss} -> {during_rss} KiB; root's job {local:.2f} s"
            + (f", a certificate holder's {remote_sec:.2f} s" if remote_sec is not None else "")
        )
    handshake = getattr(limits, "tls_handshake_timeout_sec", 60.0)
    after = settle_fds(pid, before_fds + OTHER_FDS // 4, wait=handshake + 10)
    print(f"after the flood: agent fds {after}, RSS {rss_kib(pid)} KiB")
    assert after <= before_fds + OTHER_FDS // 4, f"descriptors stay held: {before_fds} -> {after}"
    return least - before_fds


def test_a_flood_from_one_address_leaves_the_local_socket_and_other_peers_served(
    certs: dict[str, str], limits: object
) -> None:
    held = run_flood(ONE_SOURCE, remote=certs["developer2"], limits=limits)
    per_peer = getattr(limits, "max_tcp_per_peer", None)
    assert per_peer is not None, "the agent has no per-peer connection cap"
    assert held <= per_peer + OTHER_FDS, f"one peer held {held} of the agent's descriptors"
    restart_agent()
    another_user_runs_a_job()
    another_user_runs_a_job(certs["developer2"])


def test_a_flood_from_many_addresses_leaves_the_local_socket_served(limits: object) -> None:
    held = run_flood(MANY_SOURCES, remote=None, limits=limits)
    max_tcp = getattr(limits, "max_tcp", None)
    assert max_tcp is not None, "the agent has no cap on TCP connections"
    assert held <= max_tcp + OTHER_FDS, f"the flood held {held} of the agent's descriptors"
    restart_agent()
    another_user_runs_a_job()


def _tls(certs: dict[str, str], role: str) -> ssl.SSLSocket:
    """A connection that completed mutual TLS as the holder of `role`'s certificate."""
    target = resolve_target(config_path=certs[role], node=None, socket_path=None)
    assert target.ca and target.cert and target.key
    context = client_context(target.ca, target.cert, target.key)
    raw = socket.create_connection(("localhost", PORT), timeout=5)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    tls.settimeout(None)
    return tls


def _closed_by_agent(sock: ssl.SSLSocket, within: float) -> bool:
    """True once the agent closed the connection, False if it was still open after `within`."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except (ssl.SSLError, OSError):
        return True  # a reset, or an EOF without close_notify: closed all the same
    return False


def test_authenticated_connections_that_stall_are_closed(
    certs: dict[str, str], limits: object
) -> None:
    idle = getattr(limits, "idle_timeout_sec", 15.0)
    header = getattr(limits, "header_timeout_sec", 10.0)
    body = getattr(limits, "body_timeout_sec", 30.0)
    pid = agent_pid()
    before = open_fds(pid)
    silent = _tls(certs, "developer")
    half_head = _tls(certs, "developer")
    half_head.sendall(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n")
    half_body = _tls(certs, "developer")
    half_body.sendall(
        b"POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"command":'
    )
    start = time.monotonic()
    try:
        assert _closed_by_agent(silent, idle + 10), f"a silent connection outlived {idle + 10} s"
        assert _closed_by_agent(half_head, max(0.1, start + header + 10 - time.monotonic())), (
            f"half a request head outlived {header + 10} s"
        )
        assert _closed_by_agent(half_body, max(0.1, start + body + 10 - time.monotonic())), (
            f"half a request body outlived {body + 10} s"
        )
    finally:
        for sock in (silent, half_head, half_body):
            sock.close()
    assert settle_fds(pid, before + 4, wait=10) <= before + 4
    another_user_runs_a_job(certs["developer2"])


@pytest.mark.parametrize(
    ("command", "socket_filter"),
    [
        (["ss", "-Hltn", f"sport = :{PORT}"], "tcp"),
        (["ss", "-Hlx", "src /run/joblet/joblet.sock"], "unix"),
    ],
)
def test_the_listening_sockets_keep_the_units_backlog(
    command: list[str], socket_filter: str
) -> None:
    """joblet.socket's Backlog= is the queue connections wait in while the agent is busy or
    restarting; the agent must not shrink it (aiohttp's sites called listen(128))."""
    another_user_runs_a_job()  # the agent has started serving both sockets
    unit = sh("systemctl", "show", "-P", "Backlog", "joblet.socket").strip()
    rows = [line.split() for line in sh(*command).splitlines() if line.strip()]
    assert rows, f"no {socket_filter} listening socket found by {' '.join(command)}"
    # ss: State Recv-Q Send-Q ...; for a listening socket Send-Q is the backlog (TCP), and the
    # fourth column after the netid for unix sockets (u_str LISTEN Recv-Q Send-Q ...).
    backlogs = {row[3] if socket_filter == "unix" else row[2] for row in rows}
    assert backlogs == {unit}, f"{socket_filter} backlog {backlogs}, joblet.socket says {unit}"
