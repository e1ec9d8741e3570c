"""A job's network -> its unit properties, and the two helper units that set it up. Pure.

A job on a network still gets `PrivateNetwork=yes`, but joins (`JoinsNamespaceOf=`) the network
namespace of a helper unit started with it, in the same StartTransientUnit call:

- `joblet-netns-<id>.service` makes that namespace (its own `PrivateNetwork=yes`) and fills it: a
  veth pair whose job end is eth0 and whose host end is created straight in PID 1's namespace
  (which PID 1 opens for it as its stdin: HOST_NETNS), the job's address and routes, its
  nftables rules. It stays active while the job runs and
  deletes the pair when the job is gone (StopWhenUnneeded=).
- `joblet-nethost-<id>.service`, in the host's namespace, puts the host end on the network's
  bridge and brings it up.

PID 1 starts both before the job (`Requires=`, `After=`). Each is root with CAP_NET_ADMIN only,
runs the host's own programs by absolute path with a fixed argv, an environment of PID 1's
defaults only and no root directory of the job's, and reads only files the agent wrote into the
job's root-only directory on the host, which the job never sees. The job's own unit runs nothing
privileged, so nothing a job controls (its environment, /work, volumes, /tmp, a runtime's tree)
ever reaches root (review C1). The agent itself never holds CAP_NET_ADMIN nor leaves its own
private network namespace (docs/networking.md).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from joblet_agent.domain.network import (
    JOB_LINK,
    EgressRule,
    Endpoint,
    Network,
    NetworkMode,
)
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property, prop
from joblet_agent.units.sandbox import no_network

# Inside the job: its network's hosts and resolv.conf (the root's /etc/hosts and /etc/resolv.conf
# are links to these), bound read-only so the agent can keep them current.
NETWORK_DIR = PurePosixPath("/run/.network")
# In the job's root-only directory on the host (JobPaths.network): what its helper feeds to ip
# and nft.
JOB_BATCH = "net-job.batch"
HOST_BATCH = "net-host.batch"
JOB_RULES = "net-job.nft"
# The host's own programs, by absolute path: the helpers have no PATH lookup to subvert.
IP = "/usr/bin/ip"
NFT = "/usr/sbin/nft"
# PID 1's network namespace, for the host end of the pair. iproute2 6.x (Debian 13) turns
# `netns 1` into an open of /proc/1/ns/net, which a helper with CAP_NET_ADMIN alone may not do
# (reading another process's namespaces needs ptrace access: every capability PID 1 has);
# PID 1 opens it for the namespace helper as its stdin, and ip takes it from there (so not in
# -batch mode, which reopens its batch file as stdin).
HOST_NETNS = "/proc/1/ns/net"
HOST_NETNS_FD = "/proc/self/fd/0"
NAMESPACE_PREFIX = "joblet-netns-"
HOST_PREFIX = "joblet-nethost-"
CAP_NET_ADMIN = 12


def helper_unit(job_id: str) -> str:
    """The helper whose namespace the job joins (its failure is the job's failed start)."""
    return f"{NAMESPACE_PREFIX}{job_id}.service"


def host_helper_unit(job_id: str) -> str:
    return f"{HOST_PREFIX}{job_id}.service"


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


def joining(net: JobNetwork, job_id: str) -> list[Property]:
    """The job unit's side: it starts after its helpers, in the first one's network namespace."""
    if not net.attached:
        return []
    helpers = [helper_unit(job_id), host_helper_unit(job_id)]
    return [
        prop("Requires", helpers),
        prop("After", helpers),
        prop("JoinsNamespaceOf", [helper_unit(job_id)]),
    ]


def helper_units(
    net: JobNetwork, paths: JobPaths, slice_name: str
) -> list[tuple[str, list[Property]]]:
    """(name, properties) of the job's two network helpers, created with the job's unit."""
    if not net.attached:
        return []
    job_id, files = paths.root.name, paths.network
    assert net.endpoint is not None  # attached
    # The pair first, by argv: `ip -batch FILE` reopens FILE as its stdin, PID 1's namespace.
    pair = [
        *("link", "add", JOB_LINK, "type", "veth", "peer", "name", net.endpoint.link),
        *("netns", HOST_NETNS_FD),
    ]
    namespace = [
        prop("Description", f"Joblet: the network namespace of job {job_id}"),
        # It stays active for the job's life and is stopped once the job is gone.
        prop("RemainAfterExit", True),
        prop("StopWhenUnneeded", True),
        prop(
            "ExecStart",
            [
                [IP, [IP, *pair], False],
                [IP, [IP, "-batch", str(files / JOB_BATCH)], False],
                [NFT, [NFT, "-f", str(files / JOB_RULES)], False],
            ],
        ),
        # The namespace going away would delete the pair too, but later, in the background.
        prop("ExecStop", [[IP, [IP, "link", "delete", JOB_LINK], True]]),
        # Its namespace is the one the job joins. PrivateIPC too: a joining unit shares all of
        # the helper's namespaces, and the job keeps an IPC namespace of its own this way.
        prop("PrivateNetwork", True),
        prop("PrivateIPC", True),
        prop("StandardInputFile", HOST_NETNS),
    ]
    host = [
        prop("Description", f"Joblet: the host's side of job {job_id}'s network"),
        prop("Requires", [helper_unit(job_id)]),
        prop("After", [helper_unit(job_id)]),
        prop("ExecStart", [[IP, [IP, "-batch", str(files / HOST_BATCH)], False]]),
        prop("PrivateNetwork", False),
        prop("StandardInput", "null"),
    ]
    return [
        (helper_unit(job_id), namespace + _helper_profile(slice_name)),
        (host_helper_unit(job_id), host + _helper_profile(slice_name)),
    ]


def _helper_profile(slice_name: str) -> list[Property]:
    """What both helpers are: root with CAP_NET_ADMIN and nothing else it could use."""
    return [
        prop("Type", "oneshot"),
        prop("CollectMode", "inactive-or-failed"),
        prop("Slice", slice_name),
        prop("Environment", []),
        prop("StandardOutput", "journal"),
        prop("StandardError", "journal"),
        prop("CapabilityBoundingSet", 1 << CAP_NET_ADMIN),
        prop("NoNewPrivileges", True),
        prop("ProtectSystem", "strict"),
        prop("ProtectHome", "yes"),
        prop("PrivateTmp", True),
        prop("PrivateDevices", True),
        prop("ProtectKernelModules", True),
        prop("ProtectKernelLogs", True),
        prop("ProtectControlGroups", True),
        prop("ProtectClock", True),
        prop("RestrictAddressFamilies", [True, ["AF_UNIX", "AF_NETLINK"]]),
        prop("RestrictSUIDSGID", True),
        prop("LockPersonality", True),
        prop("MemoryDenyWriteExecute", True),
        prop("SystemCallArchitectures", ["native"]),
    ]


def setup_files(net: JobNetwork) -> dict[str, str]:
    """Name (in the job's root-only JobPaths.network on the host) -> content, for its helper."""
    network, endpoint = net.network, net.endpoint
    if network is None or endpoint is None:
        return {}
    job = [  # after the pair is made (helper_units)
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
