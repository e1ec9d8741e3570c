"""The host's own networks as `ip -j` shows them, and job networks that overlap them (M8)."""

from __future__ import annotations

from ipaddress import IPv4Network

from joblet_agent.domain.host_routes import conflicts, host_prefixes
from joblet_agent.domain.network import Network

ADDRESSES = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.0.5", "prefixlen": 24}]},
    {"ifname": "jb-1a2b3c4d", "addr_info": [{"local": "10.42.0.1", "prefixlen": 24}]},
]
ROUTES = [
    {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"},
    {"dst": "0.0.0.0/1", "dev": "tun0"},  # a VPN's halves of everything: not a network in use
    {"dst": "172.20.0.0/16", "gateway": "10.8.0.1", "dev": "tun0"},
    {"type": "local", "dst": "10.0.0.5", "dev": "eth0", "table": "local"},
    {"dst": "10.42.0.0/24", "dev": "jb-1a2b3c4d"},  # Joblet's own
    {"dst": "fe80::/64", "dev": "eth0"},
]


def test_the_hosts_addresses_and_routes_but_joblets_own_and_catch_alls() -> None:
    found = [(str(p.prefix), p.what) for p in host_prefixes(ADDRESSES, ROUTES)]
    assert found == [
        ("127.0.0.0/8", "address 127.0.0.1/8 on lo"),
        ("10.0.0.0/24", "address 10.0.0.5/24 on eth0"),
        ("172.20.0.0/16", "route 172.20.0.0/16 via 10.8.0.1 dev tun0"),
        ("10.0.0.5/32", "local route 10.0.0.5 dev eth0"),
    ]


def test_networks_on_the_hosts_lan_or_vpn_are_found() -> None:
    host = host_prefixes(ADDRESSES, ROUTES)
    lan = Network("lan", IPv4Network("10.0.0.0/16"))
    vpn = Network("vpn", IPv4Network("172.20.5.0/24"))
    free = Network("free", IPv4Network("10.88.0.0/24"))
    mine = Network("mine", IPv4Network("10.42.0.0/24"))  # Joblet's own bridge's: not the host's
    found = conflicts([lan, vpn, free, mine], host)
    assert [(c.network.name, c.host.what) for c in found] == [
        ("lan", "address 10.0.0.5/24 on eth0"),
        ("vpn", "route 172.20.0.0/16 via 10.8.0.1 dev tun0"),
    ]
    assert found[0].to_dict() == {
        "network": "lan",
        "cidr": "10.0.0.0/16",
        "host": "address 10.0.0.5/24 on eth0",
    }
