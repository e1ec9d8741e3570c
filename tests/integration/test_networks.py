"""Networks by effect, in the sandbox's own network namespace (the host's is never touched).

"Outside" is a network namespace of the test's own (`world`), joined to the sandbox's by a veth
pair: 198.51.100.1 on the sandbox's side, 198.51.100.2 and .3 in the world, where small servers
answer with the address they were reached from.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rnx.client import Client, Endpoint, Job
from rnx.errors import RnxError
from tests.integration.conftest import rnx, sh, wait_state

pytestmark = pytest.mark.integration

WORLD = "jtest-world"
NETWORKS = Path("/var/lib/joblet/networks")

# A TCP server that says who it is and who called; prints "ready" once it listens.
SERVER = """
import socket, sys
name = sys.argv[1] if len(sys.argv) > 1 else "server"
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2]) if len(sys.argv) > 2 else 8080)); s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(f"{name} {peer[0]}\\n".encode()); c.close()
"""
# Connects to each HOST:PORT argument; prints one line per target: ok <reply> | error <errno>.
CLIENT = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as c:
            print("ok", c.makefile().readline().strip(), flush=True)
    except OSError as e:
        print("error", type(e).__name__, e.errno, flush=True)
"""


def ip(*args: str, check: bool = True) -> str:
    return sh("ip", *args, check=check)


def host_connects(*targets: str) -> list[str]:
    """CLIENT run by the host itself (the sandbox): the control beside a job's refusal."""
    return subprocess.run(
        [sys.executable, "-c", CLIENT, *targets],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.splitlines()  # fmt: skip


def links() -> set[str]:
    return {line.split()[0].split("@")[0] for line in ip("-br", "link").splitlines()}


def job_output(client: Client, job_id: str, *, timeout: float = 60) -> list[str]:
    wait_state(client, job_id, "COMPLETED", "FAILED", "STOPPED", timeout=timeout)
    return list(client.logs(job_id, follow=False))


def run_job(client: Client, argv: list[str], **options: Any) -> list[str]:
    job = client.run(argv, **options)
    return job_output(client, job.id)


def wait_ready(client: Client, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while "ready" not in list(client.logs(job_id, follow=False)):
        assert time.monotonic() < deadline, f"job {job_id} never said ready: {client.get(job_id)}"
        assert client.get(job_id).state in ("SCHEDULED", "RUNNING"), client.get(job_id)
        time.sleep(0.1)


def server(client: Client, network: str, name: str, **options: Any) -> Job:
    job = client.run(["python3", "-c", SERVER, name], network=network, name=name, **options)
    wait_ready(client, job.id)
    return client.get(job.id)


def endpoint(job: Job) -> Endpoint:
    """A job's endpoint; it must have one (subscripting a None failed the same way before)."""
    assert job.endpoint is not None, job
    return job.endpoint


def stop_all(client: Client, jobs: list[Job]) -> None:
    def stop(job: Job) -> None:
        with Client() as own:
            if own.get(job.id).state in ("SCHEDULED", "RUNNING"):
                own.stop(job.id)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(stop, jobs))


@pytest.fixture(scope="module")
def world() -> Iterator[str]:
    """Outside the host: a namespace behind a veth pair, with servers on .2:8080, .2:8081 and
    .3:8080 answering 'world <caller's address>'."""
    ip("netns", "add", WORLD)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        ip("link", "add", "jt-world0", "type", "veth", "peer", "name", "eth0", "netns", WORLD)
        ip("addr", "add", "198.51.100.1/24", "dev", "jt-world0")
        ip("link", "set", "jt-world0", "up")
        inside = ["ip", "netns", "exec", WORLD]
        for args in (
            ["addr", "add", "198.51.100.2/24", "dev", "eth0"],
            ["addr", "add", "198.51.100.3/24", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "lo", "up"],
        ):
            sh(*inside, "ip", *args)
        for address, port in (
            ("198.51.100.2", 8080),
            ("198.51.100.2", 8081),
            ("198.51.100.3", 8080),
        ):
            code = SERVER.replace('"0.0.0.0"', repr(address))
            proc = subprocess.Popen(
                [*inside, sys.executable, "-c", code, "world", str(port)], stdout=subprocess.PIPE
            )
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            servers.append(proc)
        yield WORLD
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
        ip("link", "delete", "jt-world0", check=False)
        ip("netns", "delete", WORLD, check=False)


@pytest.fixture
def make_network(client: Client) -> Iterator[Any]:
    made: list[str] = []

    def make(cidr: str, *, internal: bool = False) -> str:
        name = f"t-{uuid.uuid4().hex[:8]}"
        client.create_network(name, cidr, internal=internal)
        made.append(name)
        return name

    yield make
    for name in made:
        client.remove_network(name)


def test_none_has_nothing_but_loopback(client: Client) -> None:
    out = run_job(client, ["python3", "-c", _INTERFACES + "import socket; socket.socket()"])
    assert out[0] == "['lo']", out
    assert "Address family not supported" in "\n".join(out), out  # no IP sockets at all


_INTERFACES = (
    "print(sorted(l.split(':')[0].strip() for l in open('/proc/self/net/dev').readlines()[2:]),"
    " flush=True)\n"
)


_NETLINK = """
import socket
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)
except OSError as e:
    print("netlink", e.errno)
"""


def test_named_network_job_has_its_link_and_cannot_change_it(
    client: Client, make_network: Any
) -> None:
    net = make_network("10.61.0.0/24")
    code = _INTERFACES + _NETLINK
    out = run_job(client, ["python3", "-c", code], network=net)
    assert out == ["['eth0', 'lo']", "netlink 97"], out  # EAFNOSUPPORT: no netlink, no config


def test_two_jobs_by_name_other_network_cannot_reach_and_nothing_remains(
    client: Client, make_network: Any
) -> None:
    a = make_network("10.62.0.0/24")
    b = make_network("10.63.0.0/24")
    srv = server(client, a, "srv")
    address = endpoint(srv).address
    try:
        assert client.network(a).jobs[0].hostname == "srv"
        out = run_job(client, ["python3", "-c", CLIENT, "srv:8080"], network=a)
        assert out[0].startswith("ok srv 10.62.0."), out  # by name, straight (no NAT)
        out = run_job(client, ["python3", "-c", CLIENT, f"{address}:8080"], network=b)
        assert out[0].startswith("error"), out
        out = run_job(client, ["python3", "-c", CLIENT, "srv:8080"], network=b)
        assert out[0].startswith("error gaierror"), out  # its name is unknown there
    finally:
        stop_all(client, [srv])
    link = endpoint(srv).link
    assert link not in links()
    assert address not in ip("-4", "addr") and address not in sh("nft", "list", "ruleset")
    assert "srv" not in (NETWORKS / a / "hosts").read_text()
    assert client.network(a).jobs == ()
    assert not any(n.startswith("jv") for n in links()), links()


def test_isolated_reaches_out_but_no_other_job(client: Client, world: str) -> None:
    srv = server(client, "isolated", "iso-srv")
    try:
        address = endpoint(srv).address
        out = run_job(
            client,
            ["python3", "-c", CLIENT, f"{address}:8080", "198.51.100.2:8080"],
            network="isolated",
        )
        assert out[0].startswith("error"), out
        assert out[1] == "ok world 198.51.100.1", out  # NAT: the world sees the host's address
    finally:
        stop_all(client, [srv])


def test_named_networks_go_out_through_nat_unless_internal(
    client: Client, make_network: Any, world: str
) -> None:
    nat = make_network("10.75.0.0/24")
    internal = make_network("10.76.0.0/24", internal=True)
    out = run_job(client, ["python3", "-c", CLIENT, "198.51.100.3:8080"], network=nat)
    assert out == ["ok world 198.51.100.1"], out
    out = run_job(client, ["python3", "-c", CLIENT, "198.51.100.3:8080"], network=internal)
    assert out[0].startswith("error"), out
    assert client.network(internal).gateway is None


def test_jobs_never_reach_the_host(client: Client, make_network: Any, world: str) -> None:
    net = make_network("10.64.0.0/24")
    host_service = subprocess.Popen(
        [sys.executable, "-c", SERVER, "host", "18080"], stdout=subprocess.PIPE
    )
    try:
        assert (
            host_service.stdout is not None and host_service.stdout.readline().strip() == b"ready"
        )
        gateway = client.network(net).gateway
        out = run_job(
            client,
            ["python3", "-c", CLIENT, f"{gateway}:18080", "198.51.100.1:18080", "127.0.0.1:18080"],
            network=net,
        )
        assert [line.split()[0] for line in out] == ["error"] * 3, out
    finally:
        host_service.kill()
        host_service.wait()


def test_allow_egress_to_one_address_and_port(client: Client, world: str) -> None:
    job = client.run(
        [
            "python3",
            "-c",
            CLIENT,
            "198.51.100.2:8080",
            "198.51.100.2:8081",
            "198.51.100.3:8080",
        ],
        network="isolated",
        allow_egress=["198.51.100.2:8080"],
    )
    out = job_output(client, job.id)
    assert out[0] == "ok world 198.51.100.1", out
    # Refused at once (no timeout): nftables in its namespace rejects, and IPAddressAllow stands
    # behind it for the addresses.
    assert out[1:] == ["error OSError 113"] * 2, out  # EHOSTUNREACH
    recorded = client.get(job.id).spec.to_dict()["allow_egress"]
    assert recorded == [
        {"target": "198.51.100.2:8080", "host": "198.51.100.2", "port": 8080,
         "addresses": ["198.51.100.2"]}
    ]  # fmt: skip


def test_allow_egress_names_are_resolved_and_recorded(client: Client) -> None:
    job = client.run(["true"], network="isolated", allow_egress=["localhost:80"])
    job_output(client, job.id)
    assert client.get(job.id).spec.allow_egress[0].addresses == ("127.0.0.1",)
    with pytest.raises(RnxError) as refused:
        client.run(["true"], network="isolated", allow_egress=["no-such-host.invalid"])
    assert refused.value.code == "invalid" and "does not resolve" in refused.value.message
    with pytest.raises(RnxError) as refused:
        client.run(["true"], allow_egress=["10.0.0.1"])
    assert "allow_egress" in refused.value.message and "'none'" in refused.value.message


def test_fifty_jobs_on_one_network(client: Client, make_network: Any) -> None:
    net = make_network("10.65.0.0/24")
    jobs: list[Job] = []
    started = time.monotonic()
    try:
        # Eight at a time, as several clients would: the agent serves them concurrently.
        def start(index: int) -> Job:
            with Client() as own:
                return own.run(
                    ["python3", "-c", SERVER, f"n{index}"], network=net, name=f"n{index}"
                )

        with ThreadPoolExecutor(8) as pool:
            jobs.extend(pool.map(start, range(50)))
        for job in jobs:
            wait_ready(client, job.id, timeout=60)
        setup = time.monotonic() - started
        addresses = [endpoint(client.get(j.id)).address for j in jobs]
        assert len(set(addresses)) == 50
        targets = [f"n{index}:8080" for index in range(50)]
        out = run_job(client, ["python3", "-c", CLIENT, *targets], network=net)
        assert out == [f"ok n{i} " + out[i].split()[-1] for i in range(50)], out
        callers = {line.split()[-1] for line in out}
        assert len(callers) == 1 and callers.pop() not in addresses
        listed = client.network(net).jobs
        assert len(listed) == 50
        print(f"50 jobs on one network up and serving in {setup:.1f}s", file=sys.stderr)
    finally:
        stop_all(client, jobs)
    assert not any(n.startswith("jv") for n in links())


# The design document's message-queue example, with the standard library only: a consumer named
# `queue` takes POST /messages until it has 100; a producer posts 100 to http://queue:8080.
CONSUMER = """
import http.server, json
got = []
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
s = http.server.HTTPServer(("0.0.0.0", 8080), H)
print("ready", flush=True)
while len(got) < 100:
    s.handle_request()
ids = sorted(m["id"] for m in got)
print("received", len(got), "distinct", len(set(ids)), "in order", ids == list(range(100)))
"""
PRODUCER = """
import json, urllib.request
for i in range(100):
    body = json.dumps({"id": i, "data": f"message {i}"}).encode()
    req = urllib.request.Request("http://queue:8080/messages", data=body,
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()
print("sent 100")
"""


def test_message_queue_shape(client: Client, make_network: Any) -> None:
    net = make_network("10.66.0.0/24")
    consumer = client.run(["python3", "-c", CONSUMER], network=net, name="queue")
    wait_ready(client, consumer.id)
    assert run_job(client, ["python3", "-c", PRODUCER], network=net) == ["sent 100"]
    out = job_output(client, consumer.id)
    assert out[-1] == "received 100 distinct 100 in order True", out


def test_remove_refused_while_in_use_and_names_unique(client: Client, make_network: Any) -> None:
    net = make_network("10.67.0.0/24")
    srv = server(client, net, "one")
    try:
        with pytest.raises(RnxError) as refused:
            client.remove_network(net)
        assert refused.value.code == "conflict" and srv.id[:8] in refused.value.message
        with pytest.raises(RnxError) as taken:
            client.run(["true"], network=net, name="one")
        assert taken.value.code == "conflict"
    finally:
        stop_all(client, [srv])


def test_bad_network_requests_are_refused_clearly(client: Client, make_network: Any) -> None:
    net = make_network("10.68.0.0/24")
    cases = [
        (("x", "8.8.8.0/24"), "private range"),
        (("x", "10.68.0.0/25"), f"overlaps network '{net}'"),
        (("x", "10.69.0.1/24"), "has host bits set"),
        (("host", "10.69.0.0/24"), "modes, not network names"),
        (("Bad_Name", "10.69.0.0/24"), "lowercase"),
        ((net, "10.70.0.0/24"), "already exists"),
    ]
    for (name, cidr), why in cases:
        with pytest.raises(RnxError) as refused:
            client.create_network(name, cidr)
        assert why in refused.value.message, refused.value.message
    # A network a job names that does not exist: made for admins and maintainers (as the design
    # document's examples need), refused for developers (test_control_plane).
    made = client.run(["true"], network="auto-made-net")
    assert made.warnings == (
        "network 'auto-made-net' did not exist: created (10.88.0.0/24, outbound NAT)",
    )
    client.wait(made.id)
    client.remove_network("auto-made-net")


def test_host_network_is_recorded_and_cli_lists_networks(client: Client, make_network: Any) -> None:
    net = make_network("10.71.0.0/24")
    job = client.run(["python3", "-c", _INTERFACES], network="host")
    out = job_output(client, job.id)
    assert f"'{client.network(net).bridge}'" in out[0], out  # the sandbox's own interfaces
    assert client.get(job.id).spec.network == "host"
    listed = rnx("network", "list")
    assert listed.returncode == 0 and net in listed.stdout and "10.71.0.0/24" in listed.stdout
    ran = rnx(
        "--json", "job", "run", "-d", "--network", net, "--allow-egress", "10.9.9.9:80", "true"
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["spec"]["allow_egress"][0]["addresses"] == ["10.9.9.9"]
    shown = rnx("network", "show", net)
    assert shown.returncode == 0 and "10.71.0.0/24" in shown.stdout, shown
    as_json = json.loads(rnx("--json", "network", "list").stdout)
    assert any(n["name"] == net and n["cidr"] == "10.71.0.0/24" for n in as_json)


def test_agent_restart_reconciles(client: Client, make_network: Any) -> None:
    """A job's link left behind (here: made by hand) and a job that ended while the agent was
    down: the next agent start removes the one and frees the other's name."""
    net = make_network("10.72.0.0/24")
    srv = server(client, net, "gone")
    stays = server(client, net, "stays")
    try:
        ip("link", "add", "jv0000deadbeef", "type", "veth", "peer", "name", "jt-stale0")
        sh("systemctl", "stop", "joblet.service")
        sh("systemctl", "kill", "--signal=KILL", srv.unit)
        time.sleep(0.5)
        assert wait_state(client, srv.id, "FAILED")  # the request starts the agent again
        assert "jv0000deadbeef" not in links()
        hosts = (NETWORKS / net / "hosts").read_text()
        assert "gone" not in hosts and "stays" in hosts, hosts
        assert endpoint(srv).link not in links()
        assert endpoint(stays).link in links()
        # Addresses survive the restart: a new job never gets the one a live job has.
        taken = {endpoint(stays).address}
        for _ in range(3):
            job = client.run(["true"], network=net)
            assert endpoint(job).address not in taken
            taken.add(endpoint(job).address)
            job_output(client, job.id)
        out = run_job(client, ["python3", "-c", CLIENT, "stays:8080"], network=net)
        assert out[0].startswith("ok stays"), out
    finally:
        stop_all(client, [srv, stays])


# Sends one UDP datagram from its own address and one from an address it does not have
# (IP_FREEBIND lets any process bind one), then one more from its own.
SPOOFER = """
import socket, sys
def send(source, text):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
    s.bind((source, 0))
    try:
        s.sendto(text.encode(), (sys.argv[1], 9999))
        print("sent", text, flush=True)
    except OSError as e:
        print("refused", text, e.errno, flush=True)
me = socket.gethostbyname(sys.argv[2])
send(me, "real")
send("10.73.0.200", "spoofed")
send(me, "real-again")
"""
SINK = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9999))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(100)
    print(data.decode(), peer[0], flush=True)
    if data == b"real-again":
        break
"""


def test_a_job_cannot_send_with_another_address(client: Client, make_network: Any) -> None:
    net = make_network("10.73.0.0/24")
    sink = client.run(["python3", "-c", SINK], network=net, name="sink")
    wait_ready(client, sink.id)
    spoofer = client.run(["python3", "-c", SPOOFER, "sink", "spoofer"], network=net, name="spoofer")
    out = job_output(client, spoofer.id)
    address = endpoint(client.get(spoofer.id)).address
    assert out[0] == "sent real" and out[2] == "sent real-again", out
    received = job_output(client, sink.id)[1:]
    assert received == [f"real {address}", f"real-again {address}"], received


def test_a_network_job_still_scores_safe(client: Client, make_network: Any) -> None:
    net = make_network("10.74.0.0/24")
    job = client.run(["sleep", "30"], network=net)
    try:
        report = sh("systemd-analyze", "security", "--no-pager", job.unit)
    finally:
        client.stop(job.id)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)[1])  # type: ignore[index]
    assert score <= 0.8, report  # docs/security.md: 0.8 (IP sockets, no IPAddressDeny=any)


def test_a_host_network_job_scores_as_documented(client: Client) -> None:
    """An admin's --network=host job keeps every other property: 1.2 (docs/security.md)."""
    job = client.run(["sleep", "30"], network="host")
    try:
        report = sh("systemd-analyze", "security", "--no-pager", job.unit)
    finally:
        client.stop(job.id)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", report)[1])  # type: ignore[index]
    assert score <= 1.2, report
