"""docs/networking.md's two rules the network tests only held as rule text, now by effect:
link-local destinations are rejected (cloud metadata services live there), and a job sends no
IPv6 at all. Each with the control that shows the attempt could have worked.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from rnx.client import Client
from tests.integration.test_networks import (  # noqa: F401 (world: a fixture)
    CLIENT,
    SERVER,
    WORLD,
    host_connects,
    ip,
    make_network,
    run_job,
    world,
)

METADATA = "169.254.169.254"


@pytest.fixture
def metadata_service(world: str) -> Iterator[str]:  # noqa: F811
    """A server at 169.254.169.254:8080 in the world namespace, routed to from the sandbox as
    any other destination there (the address cloud metadata services use)."""
    ip("netns", "exec", world, "ip", "addr", "add", f"{METADATA}/32", "dev", "eth0")
    ip("route", "add", f"{METADATA}/32", "dev", "jt-world0")
    code = SERVER.replace('"0.0.0.0"', repr(METADATA))
    inside = ["ip", "netns", "exec", WORLD, sys.executable, "-c", code, "metadata", "8080"]
    server = subprocess.Popen(inside, stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        yield METADATA
    finally:
        server.kill()
        server.wait()
        ip("route", "del", f"{METADATA}/32", "dev", "jt-world0", check=False)
        ip(
            "netns",
            "exec",
            world,
            "ip",
            "addr",
            "del",
            f"{METADATA}/32",
            "dev",
            "eth0",
            check=False,
        )


def test_link_local_is_rejected_while_the_host_and_the_world_answer(
    client: Client,
    make_network: Any,  # noqa: F811
    metadata_service: str,
) -> None:
    # The control: the host reaches it, and the job reaches the world next to it.
    host = host_connects(f"{metadata_service}:8080")
    assert host == ["ok metadata 198.51.100.1"], host
    net = make_network("10.66.0.0/24")
    for network in ("isolated", net):
        out = run_job(
            client,
            ["python3", "-c", CLIENT, "198.51.100.3:8080", f"{metadata_service}:8080"],
            network=network,
        )
        assert out[0] == "ok world 198.51.100.1", (network, out)
        assert out[1].startswith("error"), (network, out)
        assert out[1].split()[-1] in ("111", "113"), (network, out)  # refused, not a timeout


# The job's addresses, then an IPv6 datagram from a link-local source it binds without owning
# it (IP_FREEBIND: no privilege needed) to all nodes on eth0; an IPv4 one the same way as the
# control that such a send leaves the job.
_IPV6 = """
import errno, socket
lines = open("/proc/self/net/if_inet6").read().split("\\n")
print("v6 on eth0:", sum(1 for line in lines if line.endswith("eth0")))
index = socket.if_nametoindex("eth0")
for family, source, target in (
    (socket.AF_INET, ("0.0.0.0", 0), ("198.51.100.2", 9)),
    (socket.AF_INET6, ("fe80::99", 0, 0, index), ("ff02::1", 9, 0, index)),
):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND
    try:
        s.bind(source)
        s.sendto(b"x", target)
        print(family.name, "sent")
    except OSError as e:
        print(family.name, errno.errorcode[e.errno])
"""


def test_a_network_job_has_no_ipv6_and_sends_none(
    client: Client,
    make_network: Any,  # noqa: F811
) -> None:
    """No address on eth0 (`addrgenmode none`), and the job's own nftables rules drop what it
    sends anyway (EPERM from the output hook), while the same IPv4 send leaves."""
    net = make_network("10.67.0.0/24")
    for network in ("isolated", net):
        out = run_job(client, ["python3", "-c", _IPV6], network=network)
        assert out == ["v6 on eth0: 0", "AF_INET sent", "AF_INET6 EPERM"], (network, out)
