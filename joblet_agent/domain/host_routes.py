"""The host's own networks, as the host side of job networks finds them (`ip -j -4 addr`,
`ip -j -4 route show table all`), and the job networks that overlap them (review M8). Pure.

A job network on the host's LAN (or a VPN's range) puts the LAN's gateway address on a bridge:
the host loses its route and the LAN's traffic is hijacked. So a network whose CIDR overlaps an
address or a route of the host is not made, and its creation is refused naming what it
overlaps. Joblet's own bridges and job links are not the host's; nor are routes shorter than /8
(a default route, or a VPN's 0.0.0.0/1 halves: they cover everything, not a network in use).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joblet_agent.domain.network import BRIDGE_PREFIX, LINK_PREFIX, Network

MIN_ROUTE_PREFIX = 8


@dataclass(frozen=True, slots=True)
class HostPrefix:
    prefix: ipaddress.IPv4Network
    what: str  # for people: "address 10.0.0.5/24 on eth0", "route 10.8.0.0/16 dev tun0"


@dataclass(frozen=True, slots=True)
class Conflict:
    network: Network
    host: HostPrefix

    def to_dict(self) -> dict[str, str]:
        return {
            "network": self.network.name,
            "cidr": str(self.network.cidr),
            "host": self.host.what,
        }


def _joblets(device: str) -> bool:
    return device.startswith((BRIDGE_PREFIX, LINK_PREFIX))


def host_prefixes(
    addresses: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]]
) -> list[HostPrefix]:
    """From `ip -j -4 addr` and `ip -j -4 route show table all`: every IPv4 network the host
    has an address in or a route to, but Joblet's own and catch-all routes."""
    found: list[HostPrefix] = []
    for link in addresses:
        device = str(link.get("ifname", ""))
        if _joblets(device):
            continue
        for info in link.get("addr_info", ()):
            if info.get("family", "inet") != "inet" or "local" not in info:
                continue
            text = f"{info['local']}/{info.get('prefixlen', 32)}"
            network = ipaddress.IPv4Network(text, strict=False)
            found.append(HostPrefix(network, f"address {text} on {device}"))
    for route in routes:
        device = str(route.get("dev", ""))
        destination = str(route.get("dst", "default"))
        if _joblets(device) or destination == "default":
            continue
        try:
            network = ipaddress.IPv4Network(destination, strict=False)
        except ValueError:  # an IPv6 or odd entry: not ours to judge
            continue
        if network.prefixlen < MIN_ROUTE_PREFIX:
            continue
        via = f" via {route['gateway']}" if route.get("gateway") else ""
        kind = str(route.get("type", "unicast"))
        label = "route" if kind == "unicast" else f"{kind} route"
        found.append(HostPrefix(network, f"{label} {destination}{via} dev {device or '-'}"))
    return found


def conflicts(networks: Iterable[Network], host: Sequence[HostPrefix]) -> list[Conflict]:
    """Each network that overlaps a host prefix, with the first one it overlaps."""
    found = []
    for network in networks:
        clash = next((p for p in host if p.prefix.overlaps(network.cidr)), None)
        if clash is not None:
            found.append(Conflict(network, clash))
    return found


def free_of(cidr: ipaddress.IPv4Network, host: Iterable[ipaddress.IPv4Network]) -> bool:
    return not any(cidr.overlaps(prefix) for prefix in host)
