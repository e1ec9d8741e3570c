"""Networks: the model, its validation and address allocation. Pure: no I/O.

A job's `network` is one of the modes `none` (the default: loopback only), `isolated` (NAT to the
outside, no other job reachable) and `host` (admin only), or the name of a network made with
`rnx network create`. Jobs on a network each get an address of its CIDR and find each other by
hostname; docs/networking.md has the picture.

A named network belongs to whoever made it (`owner`), who may share it with others, with names or
without (`read_only`: domain/sharing.py). Records of older agents name at most `created_by`: the
owner is then that name (domain/owner.py's legacy_owner), or root on the local socket.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from joblet_agent.domain.fields import Fields
from joblet_agent.domain.owner import LOCAL_ADMIN, legacy_owner
from joblet_agent.domain.sharing import Share, Shared, shares_from
from joblet_agent.errors import ErrorCode, JobletError, invalid


class NetworkMode(StrEnum):
    NONE = "none"  # loopback only, and no address reachable even there
    ISOLATED = "isolated"  # outbound through NAT; no other job reachable, no one reaches it
    HOST = "host"  # the host's own network namespace (admin only, recorded on the job)

    @classmethod
    def of(cls, network: str) -> NetworkMode | None:
        """The mode a job's `network` names, or None for a named network."""
        try:
            return cls(network)
        except ValueError:
            return None


# The built-in network behind `isolated`: one bridge whose ports may not talk to each other.
ISOLATED = "isolated"
_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,30}[a-z0-9])?$")
# A job network's CIDR must be private: a public one would hijack the host's route to real hosts.
PRIVATE_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
MIN_PREFIX, MAX_PREFIX = 16, 28
BRIDGE_PREFIX = "jb-"  # every bridge the agent makes; nothing else on the host may use it
LINK_PREFIX = "jv"  # the host end of every job's veth pair
JOB_LINK = "eth0"  # the job's end, inside its own network namespace


@dataclass(frozen=True, slots=True)
class Network:
    name: str
    cidr: ipaddress.IPv4Network
    internal: bool = False  # no NAT: nothing outside the network is reachable
    created_by: str | None = None
    created_at: datetime | None = None
    owner: str = LOCAL_ADMIN  # cert:NAME or unix:NAME (domain/owner.py)
    shares: tuple[Share, ...] = ()

    @property
    def shared(self) -> Shared:
        return Shared("network", self.name, self.owner, self.shares, public=self.isolated_ports)

    @property
    def isolated_ports(self) -> bool:
        """The built-in isolated network: its jobs reach the outside, never each other."""
        return self.name == ISOLATED

    @property
    def bridge(self) -> str:
        """Interface names have at most 15 characters; network names up to 32, so a digest."""
        if self.isolated_ports:
            return BRIDGE_PREFIX + "isolated"
        return BRIDGE_PREFIX + hashlib.sha256(self.name.encode()).hexdigest()[:8]

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The bridge's own address (NAT networks only; internal ones have none)."""
        return self.cidr.network_address + 1

    @property
    def nat(self) -> bool:
        return not self.internal

    def host_addresses(self) -> range:
        """Offsets from the network address that jobs may get: not the network address, the
        gateway or the broadcast address."""
        return range(2, self.cidr.num_addresses - 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cidr": str(self.cidr),
            "internal": self.internal,
            "bridge": self.bridge,
            "gateway": None if self.internal else str(self.gateway),
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "owner": self.owner,
            "shares": [s.to_dict() for s in self.shares],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Network:
        created = data.get("created_at")
        created_by = data.get("created_by")
        return cls(
            name=data["name"],
            cidr=ipaddress.IPv4Network(data["cidr"]),
            internal=bool(data["internal"]),
            created_by=created_by,
            created_at=datetime.fromisoformat(created) if created else None,
            owner=data.get("owner") or (legacy_owner(created_by) if created_by else LOCAL_ADMIN),
            shares=shares_from(data.get("shares", ())),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A job's place on a network: recorded on the job while it lives and after."""

    network: str
    address: str
    hostname: str
    link: str  # the host end of its veth pair

    def to_dict(self) -> dict[str, str]:
        return {
            "network": self.network,
            "address": self.address,
            "hostname": self.hostname,
            "link": self.link,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Endpoint:
        return cls(
            network=data["network"],
            address=data["address"],
            hostname=data["hostname"],
            link=data["link"],
        )


@dataclass(frozen=True, slots=True)
class EgressRule:
    """One --allow-egress entry: as asked, and the addresses its host resolved to at submit."""

    target: str
    host: str
    port: int | None = None
    addresses: tuple[str, ...] = ()  # IPv4 addresses or prefixes ("10.0.0.0/24")

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "host": self.host,
            "port": self.port,
            "addresses": list(self.addresses),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EgressRule:
        return cls(
            target=data["target"],
            host=data["host"],
            port=data["port"],
            addresses=tuple(data["addresses"]),
        )


# -- validation ------------------------------------------------------------------------------


def check_name(fields: Fields, key: str, name: str) -> str:
    if NetworkMode.of(name) is not None:
        raise fields.error(key, name, f"{', '.join(NetworkMode)} are modes, not network names")
    if not _NAME.match(name):
        raise fields.error(
            key, name, "1-32 lowercase letters, digits and '-', starting with a letter"
        )
    return name


def check_job_network(fields: Fields, key: str, value: str) -> str:
    if NetworkMode.of(value) is not None:
        return value
    if not _NAME.match(value):
        raise fields.error(key, value, f"one of {', '.join(NetworkMode)} or the name of a network")
    return value


def parse_cidr(fields: Fields, key: str, text: str) -> ipaddress.IPv4Network:
    try:
        cidr = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise fields.error(key, text, f"an IPv4 network like 10.42.0.0/24 ({exc})") from None
    if not MIN_PREFIX <= cidr.prefixlen <= MAX_PREFIX:
        raise fields.error(key, text, f"a prefix length from /{MIN_PREFIX} to /{MAX_PREFIX}")
    if not any(cidr.subnet_of(r) for r in PRIVATE_RANGES):
        ranges = ", ".join(str(r) for r in PRIVATE_RANGES)
        raise fields.error(key, text, f"a private range ({ranges})")
    return cidr


@dataclass(frozen=True, slots=True)
class NetworkRequest:
    """What `rnx network create` asks for, its shape checked (parse_network_request)."""

    name: str
    cidr: ipaddress.IPv4Network
    internal: bool = False


def parse_network_request(data: object) -> NetworkRequest:
    top = Fields(data, "")
    name = check_name(top, "name", top.required_string("name"))
    cidr = parse_cidr(top, "cidr", top.required_string("cidr"))
    internal = top.boolean("internal", False)
    top.reject_unknown()
    return NetworkRequest(name, cidr, internal)


def new_network(wanted: NetworkRequest, *, existing: Iterable[Network], owner: str) -> Network:
    """The network asked for, if it clashes with none of the `existing` ones."""
    name, cidr = wanted.name, wanted.cidr
    for other in existing:
        if other.name == name:
            raise JobletError(ErrorCode.CONFLICT, f"network {name!r} already exists")
        if other.cidr.overlaps(cidr):
            raise invalid("cidr", str(cidr), f"overlaps network {other.name!r} ({other.cidr})")
        if other.bridge == Network(name, cidr).bridge:  # a digest collision: astronomically rare
            raise invalid("name", name, f"its bridge name collides with {other.name!r}")
    return Network(name=name, cidr=cidr, internal=wanted.internal, created_by=owner, owner=owner)


def parse_egress(fields: Fields, key: str, text: str) -> EgressRule:
    """HOST, HOST:PORT, ADDRESS[/PREFIX] or ADDRESS[/PREFIX]:PORT (IPv4; jobs have no IPv6)."""
    host, sep, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host or host.startswith("[") or ":" in host:
        raise fields.error(key, text, "HOST or HOST:PORT, with an IPv4 address or a DNS name")
    port = None
    if sep:
        digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
        if not digits or not 1 <= int(port_text) <= 65535:
            raise fields.error(key, text, "the port must be a number from 1 to 65535")
        port = int(port_text)
    if host[0].isdigit():
        try:
            net = ipaddress.IPv4Network(host, strict=False)
        except ValueError:
            raise fields.error(key, text, "not an IPv4 address or prefix") from None
        return EgressRule(target=text, host=host, port=port, addresses=(_prefix(net),))
    if len(host) > 253 or not all(re.fullmatch(r"[A-Za-z0-9_-]{1,63}", p) for p in host.split(".")):
        raise fields.error(key, text, "the host is not a valid DNS name")
    return EgressRule(target=text, host=host.lower(), port=port)


def _prefix(net: ipaddress.IPv4Network) -> str:
    return str(net.network_address) if net.prefixlen == 32 else str(net)


# -- allocation ------------------------------------------------------------------------------


def allocate_address(network: Network, used: set[str], cursor: int) -> tuple[str, int]:
    """The first free address at or after `cursor` (wrapping), and the next cursor. Walking on
    rather than reusing the lowest free address keeps a just-freed address (still in its peers'
    ARP caches) out of use for as long as the range allows."""
    offsets = network.host_addresses()
    count = len(offsets)
    start = cursor - offsets.start if offsets.start <= cursor < offsets.stop else 0
    for step in range(count):
        offset = offsets.start + (start + step) % count
        address = str(network.cidr.network_address + offset)
        if address not in used:
            return address, offset + 1
    raise JobletError(
        ErrorCode.CONFLICT,
        f"network {network.name!r} ({network.cidr}) has no free address: {count} jobs use it",
        hint="wait for jobs on it to end, or create a network with a larger CIDR",
    )


def link_name(job_id: str) -> str:
    """The host end of a job's veth pair: 14 characters (IFNAMSIZ allows 15)."""
    return LINK_PREFIX + job_id.replace("-", "")[:12]


def default_hostname(job_id: str) -> str:
    return f"job-{job_id[:8]}"


def hosts_file(endpoints: Iterable[Endpoint]) -> str:
    """/etc/hosts of every job on one network: its peers by hostname, itself included."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for endpoint in sorted(endpoints, key=lambda e: ipaddress.IPv4Address(e.address)):
        lines.append(f"{endpoint.address}\t{endpoint.hostname}")
    return "\n".join(lines) + "\n"


def job_resolv_conf(host_resolv_conf: str) -> str:
    """The host's nameservers that a job can reach: not loopback ones (a stub resolver on the
    host is the host's own service, which jobs never reach)."""
    kept = []
    for line in host_resolv_conf.splitlines():
        words = line.split()
        if not words or words[0] not in ("nameserver", "search", "options"):
            continue
        if words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1]) if len(words) > 1 else None
            except ValueError:
                continue
            if address is None or address.is_loopback or address.version != 4:
                continue
        kept.append(" ".join(words))
    return "".join(line + "\n" for line in kept)


def nameservers(resolv_conf: str) -> tuple[str, ...]:
    """The nameservers of a resolv.conf (job_resolv_conf's: those a job can reach)."""
    return tuple(
        words[1]
        for words in (line.split() for line in resolv_conf.splitlines())
        if len(words) > 1 and words[0] == "nameserver"
    )


@dataclass(frozen=True, slots=True)
class HostState:
    """What the host should have: these networks' bridges and rules, and these job links."""

    networks: tuple[Network, ...]
    links: frozenset[str]
    forwarding_marker: Path  # exists while IP forwarding is on because Joblet turned it on
    # Private or link-local prefixes NAT networks may reach all the same (joblet.yml's
    # networks.allow_private), and the nameservers their jobs' resolv.conf names (port 53).
    allow_private: tuple[ipaddress.IPv4Network, ...] = ()
    nameservers: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "networks": [n.to_dict() for n in self.networks],
                "links": sorted(self.links),
                "forwarding_marker": str(self.forwarding_marker),
                "allow_private": [str(p) for p in self.allow_private],
                "nameservers": list(self.nameservers),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> HostState:
        data = json.loads(text)
        return cls(
            networks=tuple(Network.from_dict(n) for n in data["networks"]),
            links=frozenset(data["links"]),
            forwarding_marker=Path(data["forwarding_marker"]),
            allow_private=tuple(ipaddress.IPv4Network(p) for p in data.get("allow_private", ())),
            # Addresses, checked again: they are pasted into the host's nftables rules.
            nameservers=tuple(str(ipaddress.IPv4Address(n)) for n in data.get("nameservers", ())),
        )
