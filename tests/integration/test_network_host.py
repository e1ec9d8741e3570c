"""The host's side of job networks, by effect (review M7, M8, M9; docs/networking.md):

- a network whose CIDR overlaps the host's own addresses or routes is refused, naming them;
- NAT networks reach no private, shared or link-local range unless joblet.yml allows a prefix;
- "jobs never reach the host" holds through a port the host publishes by DNAT and through a
  hairpin: out to the host's public address at a 1:1 NAT and back in;
- where Joblet turned IP forwarding on, the host forwards nothing but job networks' traffic.

Each refusal comes with the control that shows the path works for someone else (the host, the
world), so a refusal cannot come from a path that was never there. The world is
test_networks.py's namespace behind jt-world0 (198.51.100.1 on the sandbox's side).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.configured_agent import configured_agent
from tests.integration.conftest import sh, wait_state
from tests.integration.test_networks import (  # noqa: F401 (world, make_network: fixtures)
    CLIENT,
    NETWORKS,
    SERVER,
    WORLD,
    host_connects,
    ip,
    links,
    make_network,
    run_job,
    world,
)

pytestmark = pytest.mark.integration

HOST = "198.51.100.1"  # the sandbox's address towards the world
REFUSED = ("111", "113")  # ECONNREFUSED, EHOSTUNREACH: a reject, not a timeout
CONTAINER = "jtest-ctr"
PUBLIC = "203.0.113.10"  # the host's public address, held by a 1:1 NAT in the world
# One of each range NAT networks may not reach: private (three), shared, link-local is in
# test_network_edges.py.
PRIVATE = ("10.99.0.1", "172.16.99.1", "192.168.99.1", "100.64.99.1")


def in_world(*argv: str) -> str:
    return sh("ip", "netns", "exec", WORLD, *argv)


def nft(namespace: str, ruleset: str) -> None:
    argv = ["nft", "-f", "-"]
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    subprocess.run(argv, input=ruleset, text=True, check=True, timeout=30)


def serve(namespace: str, address: str, port: int, name: str) -> subprocess.Popen[bytes]:
    code = SERVER.replace('"0.0.0.0"', repr(address))
    argv = [sys.executable, "-c", code, name, str(port)]
    if namespace:
        argv = ["ip", "netns", "exec", namespace, *argv]
    server = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
    return server


def stop(*servers: subprocess.Popen[bytes]) -> None:
    for server in servers:
        server.kill()
        server.wait()


def refused(line: str) -> bool:
    return line.startswith("error") and line.rsplit(maxsplit=1)[-1] in REFUSED


# -- CIDRs that overlap the host's own ----------------------------------------------------------


@pytest.fixture
def host_lan() -> Iterator[None]:
    """A LAN the host is on (10.123.0.5/24) and a network it routes to (10.124.0.0/16), as a
    VPN would add."""
    ip("link", "add", "jt-lan0", "type", "veth", "peer", "name", "jt-lan1")  # no dummy module
    try:
        ip("addr", "add", "10.123.0.5/24", "dev", "jt-lan0")
        ip("link", "set", "jt-lan1", "up")
        ip("link", "set", "jt-lan0", "up")
        ip("route", "add", "10.124.0.0/16", "via", "10.123.0.1", "dev", "jt-lan0")
        yield
    finally:
        ip("link", "delete", "jt-lan0", check=False)


def test_a_network_overlapping_the_hosts_addresses_or_routes_is_refused(
    client: Client,
    make_network: Any,  # noqa: F811
    host_lan: None,
) -> None:
    before = links()
    cases = {
        "10.123.0.0/24": "address 10.123.0.5/24 on jt-lan0",
        "10.123.0.128/25": "address 10.123.0.5/24 on jt-lan0",
        "10.124.200.0/24": "route 10.124.0.0/16 via 10.123.0.1 dev jt-lan0",
    }
    for cidr, what in cases.items():
        name = f"t-{uuid.uuid4().hex[:8]}"
        with pytest.raises(RnxError) as refusal:
            client.create_network(name, cidr)
        assert refusal.value.message == (
            f"cidr: {cidr!r} overlaps the host's {what} (network {name!r})"
        ), refusal.value.message
        assert name not in {n.name for n in client.networks()}  # nothing half-done
        assert not (NETWORKS / name).exists()
    assert links() == before  # no bridge made, none left
    # The host's LAN still has its address and route: no bridge took them.
    assert "10.123.0.5/24" in ip("-4", "-o", "addr", "show", "dev", "jt-lan0")
    assert "10.124.0.0/16 via 10.123.0.1" in ip("-4", "route", "show", "dev", "jt-lan0")
    # The control: a range next to them is made.
    net = make_network("10.125.0.0/24")
    assert client.network(net).gateway == "10.125.0.1"


# -- private ranges ------------------------------------------------------------------------------


@pytest.fixture
def private_services(world: str) -> Iterator[tuple[str, ...]]:  # noqa: F811
    """A server on one address of each private range, in the world, routed to from the host."""
    servers = []
    try:
        for address in PRIVATE:
            in_world("ip", "addr", "add", f"{address}/32", "dev", "eth0")
            ip("route", "add", f"{address}/32", "via", "198.51.100.2")
            servers.append(serve(WORLD, address, 8080, "private"))
        yield PRIVATE
    finally:
        stop(*servers)
        for address in PRIVATE:
            ip("route", "del", f"{address}/32", check=False)
            in_world_quiet = ["ip", "netns", "exec", WORLD, "ip", "addr", "del", f"{address}/32"]
            sh(*in_world_quiet, "dev", "eth0", check=False)


def test_nat_networks_reach_no_private_range_unless_allowed(
    client: Client,
    make_network: Any,  # noqa: F811
    private_services: tuple[str, ...],
) -> None:
    targets = [f"{address}:8080" for address in private_services]
    assert host_connects(*targets) == [f"ok private {HOST}"] * len(targets)  # the control
    net = make_network("10.71.0.0/24")
    for network in ("isolated", net):
        out = run_job(
            client, ["python3", "-c", CLIENT, "198.51.100.3:8080", *targets], network=network
        )
        assert out[0] == f"ok world {HOST}", (network, out)  # out through NAT, as ever
        assert all(refused(line) for line in out[1:]), (network, out)
    # An admin allows one prefix: that one is reached, the others still are not.
    with configured_agent("networks:\n  allow_private: [10.99.0.0/24]\n"), Client() as admin:
        out = run_job(admin, ["python3", "-c", CLIENT, *targets], network="isolated")
    assert out[0] == f"ok private {HOST}", out
    assert all(refused(line) for line in out[1:]), out


# -- the host through DNAT and hairpin -----------------------------------------------------------


@pytest.fixture
def published_port() -> Iterator[str]:
    """A container behind the host, as Docker makes one: 198.18.0.2:8080 in a namespace of its
    own on jt-ctr0, published on every host address at port 8090 by DNAT (prerouting for
    others, output for the host itself)."""
    ip("netns", "add", CONTAINER)
    server = None
    try:
        ip("link", "add", "jt-ctr0", "type", "veth", "peer", "name", "eth0", "netns", CONTAINER)
        ip("addr", "add", "198.18.0.1/24", "dev", "jt-ctr0")
        ip("link", "set", "jt-ctr0", "up")
        inside = ["ip", "netns", "exec", CONTAINER, "ip"]
        sh(*inside, "addr", "add", "198.18.0.2/24", "dev", "eth0")
        sh(*inside, "link", "set", "eth0", "up")
        sh(*inside, "route", "add", "default", "via", "198.18.0.1")
        dnat = "fib daddr type local tcp dport 8090 dnat to 198.18.0.2:8080"
        nft(
            "",
            "table ip jtest_publish {\n"
            f"  chain pre {{ type nat hook prerouting priority dstnat; {dnat}; }}\n"
            f"  chain out {{ type nat hook output priority -100; {dnat}; }}\n"
            "}\n",
        )
        server = serve(CONTAINER, "198.18.0.2", 8080, "container")
        yield "8090"
    finally:
        if server is not None:
            stop(server)
        sh("nft", "delete", "table", "ip", "jtest_publish", check=False)
        ip("link", "delete", "jt-ctr0", check=False)
        ip("netns", "delete", CONTAINER, check=False)


def test_a_port_the_host_publishes_by_dnat_is_the_hosts(
    client: Client,
    make_network: Any,  # noqa: F811
    world: str,  # noqa: F811
    published_port: str,
) -> None:
    assert host_connects(f"{HOST}:{published_port}") == [f"ok container {HOST}"]  # DNAT works
    net = make_network("10.72.0.0/24")
    gateway = client.network(net).gateway
    out = run_job(
        client,
        [
            "python3", "-c", CLIENT,
            "198.18.0.2:8080",  # the container itself: jobs may reach it (not a private range)
            f"{HOST}:{published_port}",
            f"{gateway}:{published_port}",
        ],
        network=net,
    )  # fmt: skip
    assert out[0] == "ok container 198.18.0.1", out
    assert refused(out[1]) and refused(out[2]), out


@pytest.fixture
def one_to_one_nat(world: str) -> Iterator[str]:  # noqa: F811
    """The world holds the host's public address, 203.0.113.10, as a cloud's 1:1 NAT does: what
    is sent to it goes to 198.51.100.1, and what 198.51.100.1 sends out comes from it, so the
    host reaching its own public address comes back in on jt-world0 (a hairpin)."""
    for key in ("ip_forward", "conf/all/send_redirects", "conf/eth0/send_redirects"):
        value = "1" if key == "ip_forward" else "0"
        in_world(sys.executable, "-c", f"open('/proc/sys/net/ipv4/{key}', 'w').write('{value}')")
    nft(
        WORLD,
        "table ip jtest_nat {\n"
        f"  chain pre {{ type nat hook prerouting priority dstnat; ip daddr {PUBLIC} "
        f"dnat to {HOST}; }}\n"
        f"  chain post {{ type nat hook postrouting priority srcnat; ip saddr {HOST} "
        f"ip daddr {HOST} snat to {PUBLIC}; }}\n"
        "}\n",
    )
    ip("route", "add", f"{PUBLIC}/32", "via", "198.51.100.2")
    server = serve("", "0.0.0.0", 18091, "host")
    try:
        yield PUBLIC
    finally:
        stop(server)
        ip("route", "del", f"{PUBLIC}/32", check=False)
        sh("ip", "netns", "exec", WORLD, "nft", "delete", "table", "ip", "jtest_nat", check=False)


def test_a_hairpin_through_the_hosts_public_address_is_refused(
    client: Client,
    make_network: Any,  # noqa: F811
    one_to_one_nat: str,
) -> None:
    # The control: the host reaches itself at its public address, coming back from it.
    assert host_connects(f"{one_to_one_nat}:18091") == [f"ok host {one_to_one_nat}"]
    net = make_network("10.73.0.0/24")
    for network in ("isolated", net):
        out = run_job(
            client,
            ["python3", "-c", CLIENT, "198.51.100.3:8080", f"{one_to_one_nat}:18091"],
            network=network,
        )
        assert out[0] == f"ok world {HOST}", (network, out)
        assert out[1].startswith("error"), (network, out)


# -- forwarding ----------------------------------------------------------------------------------


def test_where_joblet_turned_forwarding_on_it_forwards_only_job_networks(
    client: Client,
    make_network: Any,  # noqa: F811
    world: str,  # noqa: F811
    published_port: str,
) -> None:
    """Forwarding off, then a NAT network: Joblet turns it on (and says so with its marker);
    the world then reaches no host-side network through the host, while jobs still do."""
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    forwarding.write_text("0\n")
    (NETWORKS / ".forwarding").unlink(missing_ok=True)
    net = make_network("10.74.0.0/24")
    assert forwarding.read_text().strip() == "1"
    assert (NETWORKS / ".forwarding").exists()
    in_world("ip", "route", "add", "198.18.0.0/24", "via", HOST)
    try:
        through = subprocess.run(
            ["ip", "netns", "exec", WORLD, sys.executable, "-c", CLIENT, "198.18.0.2:8080"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.splitlines()  # fmt: skip
    finally:
        sh("ip", "netns", "exec", WORLD, "ip", "route", "del", "198.18.0.0/24", check=False)
    assert through == ["error TimeoutError None"], through  # dropped, as by a policy drop
    out = run_job(client, ["python3", "-c", CLIENT, "198.18.0.2:8080"], network=net)
    assert out == ["ok container 198.18.0.1"], out  # the control: forwarding is on, for jobs


def test_a_hairpin_onto_a_port_the_host_publishes_is_refused(
    client: Client,
    make_network: Any,  # noqa: F811
    published_port: str,
    one_to_one_nat: str,
) -> None:
    """Out to the host's public address, back in, and on to the container behind the port the
    host publishes by DNAT: forwarded, never input (found by an attacker's review). On a host
    whose forwarding is not Joblet's (Docker's, say), so that nothing else stops it."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    (NETWORKS / ".forwarding").unlink(missing_ok=True)
    net = make_network("10.75.0.0/24")
    assert not (NETWORKS / ".forwarding").exists()
    # The control: the host itself goes round the same way and reaches the container.
    target = f"{one_to_one_nat}:{published_port}"
    assert host_connects(target) == [f"ok container {one_to_one_nat}"]
    for network in ("isolated", net):
        out = run_job(
            client, ["python3", "-c", CLIENT, "198.51.100.3:8080", target], network=network
        )
        assert out[0] == f"ok world {HOST}", (network, out)
        assert out[1].startswith("error"), (network, out)


# From the job: a UDP datagram and a TCP connection attempt to DEST:PORT from each source port
# in [LOW, HIGH] (nothing listens there: the world answers with a reset or port unreachable).
_SPRAY = """
import socket, sys
dest, port, low, high = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for sport in range(low, high + 1):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        s.settimeout(0.5)
        s.bind(("0.0.0.0", sport))
        try:
            s.sendto(b"x", (dest, port)) if kind == socket.SOCK_DGRAM else s.connect((dest, port))
        except OSError:
            pass
        s.close()
print("sent", flush=True)
"""
# In the world: TCP to the host from each source port given (argv[2:]), one line each; with
# "hold" first, one connection kept open across a line read from stdin, used before and after.
_WORLD_CLIENT = """
import socket, sys
target, *rest = sys.argv[1:]
host, port = target.rsplit(":", 1)
def connect(sport, timeout):
    return socket.create_connection((host, int(port)), timeout, ("198.51.100.2", int(sport)))
if rest[0] == "hold":
    s = connect(rest[1], 4)
    s.sendall(b"a"); print("before", s.recv(1).decode(), flush=True)
    sys.stdin.readline()
    try:
        s.sendall(b"b"); print("after", s.recv(1).decode(), flush=True)
    except OSError as e:
        print("after error", type(e).__name__, flush=True)
    sys.exit()
for sport in rest:
    try:
        with connect(sport, 2):
            print("ok", sport, flush=True)
    except OSError as e:
        print("error", sport, e.errno, flush=True)
"""


def test_a_job_cannot_choose_which_connections_to_the_host_are_refused(
    client: Client,
    world: str,  # noqa: F811
) -> None:
    """The hairpin rule remembers a job's flows out: a job that sends from chosen ports to an
    admin's address must not so refuse that admin's connections to the host from those ports
    (new ones, or one already open). Found by an attacker's review of the first cut."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", 18092))
    listener.listen(64)

    def echo() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=conn: _echo(c), daemon=True).start()

    threading.Thread(target=echo, daemon=True).start()
    world_client = ["ip", "netns", "exec", WORLD, sys.executable, "-c", _WORLD_CLIENT]
    held = subprocess.Popen(
        [*world_client, f"{HOST}:18092", "hold", "40150"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert held.stdout is not None and held.stdin is not None
        assert held.stdout.readline() == "before a\n"
        out = run_job(
            client,
            ["python3", "-c", _SPRAY, "198.51.100.2", "18092", "40140", "40160"],
            network="isolated",
        )
        assert out == ["sent"], out
        held.stdin.write("go\n")
        held.stdin.flush()
        assert held.stdout.readline() == "after b\n"  # the open connection lives on
        ports = [str(p) for p in range(40140, 40161) if p != 40150]
        fresh = subprocess.run(
            [*world_client, f"{HOST}:18092", *ports],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.splitlines()  # fmt: skip
        assert fresh == [f"ok {port}" for port in ports], fresh
    finally:
        held.kill()
        held.wait()
        listener.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(16):
            conn.sendall(data)


def test_a_new_isolated_cidr_on_the_hosts_lan_is_not_given_to_the_live_bridge(
    client: Client,
    host_lan: None,
) -> None:
    """networks.isolated_cidr changed to the host's LAN while an isolated job runs: at the
    agent's start the bridge that exists would be given the LAN's first address (the host's
    route hijacked). It keeps its own; new isolated jobs are refused saying why. Found by an
    attacker's review of the first cut."""
    job = client.run(["sleep", "600"], network="isolated")
    try:
        wait_state(client, job.id, "RUNNING")
        with configured_agent("networks:\n  isolated_cidr: 10.123.0.0/24\n"), Client() as admin:
            bridge = ip("-4", "-o", "addr", "show", "dev", "jb-isolated")
            assert "10.123.0.1" not in bridge and "10.213.0.1/20" in bridge, bridge
            assert "10.123.0.5/24" in ip("-4", "-o", "addr", "show", "dev", "jt-lan0")
            with pytest.raises(RnxError) as refusal:
                admin.run(["true"], network="isolated")
            assert refusal.value.message == (
                "the isolated network (10.123.0.0/24, networks.isolated_cidr in joblet.yml) "
                "overlaps the host's address 10.123.0.5/24 on jt-lan0"
            ), refusal.value.message
    finally:
        with Client() as admin:
            admin.stop(job.id)
