"""A job's network -> its unit properties and the files its privileged set-up steps read. Pure.

A job on a network still gets `PrivateNetwork=yes`: PID 1 makes its network namespace, and the
unit's own privileged steps (`ExecStartPre=+`, run by PID 1 as root in that namespace before the
job's process exists) fill it: a veth pair whose host end goes to the network's bridge, the
job's address, its routes and its nftables rules. The agent itself never holds CAP_NET_ADMIN nor
leaves its own private network namespace. Why this way and not NetworkNamespacePath=:
docs/networking.md.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from joblet_agent.networks import (
    JOB_LINK,
    EgressRule,
    Endpoint,
    Network,
    NetworkMode,
)
from joblet_agent.units.paths import META
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.sandbox import no_network

# Inside the job: its network's hosts and resolv.conf (the root's /etc/hosts and /etc/resolv.conf
# are links to these), bound read-only so the agent can keep them current.
NETWORK_DIR = PurePosixPath("/run/.network")
# Inside the job's root-only META directory: what its privileged steps feed to ip and nft.
JOB_BATCH = "net-job.batch"
HOST_BATCH = "net-host.batch"
JOB_RULES = "net-job.nft"
IP = "/usr/bin/ip"
NFT = "/usr/sbin/nft"
UNSHARE = "/usr/bin/unshare"
NSENTER = "/usr/bin/nsenter"
NETWORK_PROGRAMS = (IP, NFT, UNSHARE, NSENTER)  # what the privileged steps run in the job's root


@dataclass(frozen=True, slots=True)
class JobNetwork:
    """What the translation needs to know of a job's network."""

    mode: NetworkMode | None = NetworkMode.NONE  # None: a named network
    network: Network | None = None  # for isolated and named networks
    endpoint: Endpoint | None = None
    egress: tuple[EgressRule, ...] = ()
    files: PurePosixPath | None = None  # host directory bound at NETWORK_DIR

    @property
    def attached(self) -> bool:
        return self.network is not None and self.endpoint is not None


NO_NETWORK = JobNetwork()


def _ip_prefixes(prefixes: Sequence[tuple[int, str, int]]) -> list[list[object]]:
    """(family, address text, prefix length) -> what IPAddressAllow/Deny take over D-Bus."""
    return [[family, socket.inet_pton(family, text), length] for family, text, length in prefixes]


_ANY: list[tuple[int, str, int]] = [(socket.AF_INET, "0.0.0.0", 0), (socket.AF_INET6, "::", 0)]  # noqa: S104
_LOOPBACK: list[tuple[int, str, int]] = [
    (socket.AF_INET, "127.0.0.0", 8),
    (socket.AF_INET6, "::1", 128),
]


def network_properties(net: JobNetwork) -> list[Property]:
    if net.mode is NetworkMode.NONE:
        return no_network()
    # IP sockets only: still no netlink (a job cannot even read its network's configuration,
    # let alone change it: it has no capabilities) and no raw or packet sockets.
    families = prop("RestrictAddressFamilies", [True, ["AF_UNIX", "AF_INET", "AF_INET6"]])
    if net.mode is NetworkMode.HOST:
        return [prop("PrivateNetwork", False), families]
    props = [prop("PrivateNetwork", True), families]
    if net.egress:
        # Addresses by the kernel's cgroup filter; ports by the job namespace's nftables rules.
        allowed = list(_LOOPBACK)
        if net.network is not None and not net.network.isolated_ports:
            allowed.append(
                (socket.AF_INET, str(net.network.cidr.network_address), net.network.cidr.prefixlen)
            )
        for rule in net.egress:
            for address in rule.addresses:
                text, _, length = address.partition("/")
                allowed.append((socket.AF_INET, text, int(length or 32)))
        props += [
            prop("IPAddressAllow", _ip_prefixes(sorted(set(allowed)))),
            prop("IPAddressDeny", _ip_prefixes(_ANY)),
        ]
    return props


def network_binds(net: JobNetwork) -> list[list[object]]:
    """BindReadOnlyPaths entries: the network's hosts and resolv.conf at NETWORK_DIR."""
    if net.mode is NetworkMode.HOST:
        return [
            ["/etc/hosts", str(NETWORK_DIR / "hosts"), True, 0],
            ["/etc/resolv.conf", str(NETWORK_DIR / "resolv.conf"), True, 0],
        ]
    if net.files is None:
        return []
    return [[str(net.files), str(NETWORK_DIR), False, 0]]


def start_steps(net: JobNetwork) -> list[list[object]]:
    """ExecStartPreEx entries, privileged ('+'): root, every capability, in the job's network
    namespace and its root directory, with no /proc. `unshare --mount-proc` gives the second
    step a /proc of its own, through which nsenter reaches PID 1's (the host's) namespace."""
    if not net.attached:
        return []
    meta = str(META)
    return [
        [IP, ["ip", "-batch", f"{meta}/{JOB_BATCH}"], ["privileged"]],
        [
            UNSHARE,
            ["unshare", "--mount-proc", NSENTER, "--target=1", "--net", IP, "-batch",
             f"{meta}/{HOST_BATCH}"],
            ["privileged"],
        ],
        [NFT, ["nft", "-f", f"{meta}/{JOB_RULES}"], ["privileged"]],
    ]  # fmt: skip


def stop_steps(net: JobNetwork) -> list[list[object]]:
    """ExecStopPostEx: deleting the job's end deletes the pair at once. (The namespace going away
    would too, but the kernel does that later, in the background.)"""
    if not net.attached:
        return []
    return [[IP, ["ip", "link", "delete", JOB_LINK], ["privileged", "ignore-failure"]]]


def setup_files(net: JobNetwork) -> dict[str, str]:
    """Name (in the job's META directory) -> content, for the privileged steps."""
    network, endpoint = net.network, net.endpoint
    if network is None or endpoint is None:
        return {}
    job = [
        f"link add {JOB_LINK} type veth peer name {endpoint.link} netns 1",
        "link set lo up",
        f"link set {JOB_LINK} addrgenmode none",
        f"addr add {endpoint.address}/{network.cidr.prefixlen} dev {JOB_LINK}",
        f"link set {JOB_LINK} up",
    ]
    if network.nat:
        job.append(f"route add default via {network.gateway}")
    host = [
        f"link set {endpoint.link} addrgenmode none",
        f"link set {endpoint.link} master {network.bridge}",
    ]
    if network.isolated_ports:
        # Bridge port isolation: isolated ports forward only to non-isolated ones (the bridge).
        host.append(f"link set {endpoint.link} type bridge_slave isolated on")
    host.append(f"link set {endpoint.link} up")
    return {
        JOB_BATCH: "\n".join(job) + "\n",
        HOST_BATCH: "\n".join(host) + "\n",
        JOB_RULES: job_ruleset(network, endpoint, net.egress),
    }


def job_ruleset(network: Network, endpoint: Endpoint, egress: tuple[EgressRule, ...]) -> str:
    """nftables rules of the job's own namespace, which it can neither read nor change."""
    rules = [
        'oifname "lo" accept',
        # No IPv6 on job networks, and no packet with another source address (IP_FREEBIND lets
        # an unprivileged process bind any address).
        "meta nfproto ipv6 drop",
        f"ip saddr != {endpoint.address} drop",
    ]
    if egress:
        rules += ["ct state established,related accept"]
        if not network.isolated_ports:
            rules.append(f"ip daddr {network.cidr} accept")  # its peers
        for rule in egress:
            for address in rule.addresses:
                if rule.port is None:
                    rules.append(f"ip daddr {address} accept")
                else:
                    ports = f"meta l4proto {{ tcp, udp }} th dport {rule.port}"
                    rules.append(f"ip daddr {address} {ports} accept")
        rules.append("reject with icmpx admin-prohibited")
    body = "\n".join(f"    {r}" for r in rules)
    return (
        "table inet joblet {\n"
        "  chain output {\n"
        "    type filter hook output priority filter; policy accept;\n"
        f"{body}\n"
        "  }\n"
        "}\n"
    )  # fmt: skip


CAP_NET_ADMIN = 12


def apply_unit_properties(python: str, state_file: str, slice_name: str) -> list[Property]:
    """The short privileged unit that makes the host's side of the networks match `state_file`
    (adapters/netlink.py): root with CAP_NET_ADMIN only, in the host's network namespace."""
    return [
        prop("Description", "Joblet: apply the host side of job networks"),
        prop("Type", "oneshot"),
        prop(
            "ExecStart",
            [[python, [python, "-m", "joblet_agent.adapters.netlink", state_file], False]],
        ),
        prop("Environment", ["PYTHONDONTWRITEBYTECODE=1"]),
        prop("StandardInput", "null"),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("Slice", slice_name),
        prop("CollectMode", "inactive-or-failed"),
        prop("CapabilityBoundingSet", 1 << CAP_NET_ADMIN),
        prop("NoNewPrivileges", True),
        prop("PrivateDevices", True),
        prop("ProtectKernelModules", True),
        prop("RestrictAddressFamilies", [True, ["AF_UNIX", "AF_NETLINK"]]),
        prop("SystemCallArchitectures", ["native"]),
    ]
