"""The host's side of job networks: bridges, NAT and filter rules, IP forwarding. The only module
that runs `ip` and `nft` on the host (always with argv lists, never a shell).

It does not run inside the agent, which has no CAP_NET_ADMIN and lives in a private network
namespace: the agent writes the desired state to a file and asks PID 1 to run
`python3 -m joblet_agent.adapters.netlink FILE` as a short privileged unit
(services/networks.py). Applying is idempotent and makes the host match the file: missing
bridges are made, bridges and job links the file does not name are removed (the start-up
reconcile relies on that), and the `inet joblet` nftables table is replaced whole, atomically.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

from joblet_agent.domain.host_routes import Conflict, HostPrefix, conflicts, host_prefixes
from joblet_agent.domain.network import BRIDGE_PREFIX, LINK_PREFIX, HostState, Network
from joblet_agent.files import write_atomic

logger = logging.getLogger(__name__)

IP = "/usr/bin/ip"
NFT = "/usr/sbin/nft"
TABLE = "joblet"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# What a NAT network's jobs may not reach unless joblet.yml allows a prefix (networks.
# allow_private): the private ranges (the host's LAN, a VPN, other tenants' services), shared
# address space (carrier-grade NAT, Tailscale) and link-local (cloud metadata services hand out
# credentials to whoever asks).
NAT_UNREACHABLE = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    # Azure's WireServer: a public address, but the host's own channel to its cloud (extension
    # settings, certificates), which Azure guards only for local processes (review of 39ad1d7).
    "168.63.129.16/32",
)
# How long a job's outbound flow is remembered, to know it if it comes back to the host
# (hairpin): the round trip to a NAT in front of the host, with room for SYN retries (each
# packet of a flow with no answer yet renews it).
FLOW_TIMEOUT = "10s"
FLOWS_MAX = 65536
# Beside the state file: what the apply found on the host (its networks, and the job networks
# it did not make because they overlap them), for the agent to read.
REPORT = ".host-report.json"


def host_ruleset(
    networks: Sequence[Network],
    *,
    owns_forwarding: bool = False,
    allow_private: Sequence[IPv4Network] = (),
    nameservers: Sequence[str] = (),
) -> str:
    """The whole `inet joblet` table (pure; tests/unit pin it). Job networks reach each other
    only within themselves; nothing from a job network reaches the host itself, not through a
    port it publishes by DNAT nor by a hairpin out and back in through a 1:1 NAT in front of it;
    NAT networks reach the outside but no private, shared or link-local address (other than
    `allow_private` and their nameservers' port 53), internal ones nothing beyond themselves.
    Where Joblet turned IPv4 forwarding on (`owns_forwarding`), it forwards nothing else.
    Refusals of job traffic are rejects (a quick error), traffic towards jobs is dropped."""
    jobs = f'"{BRIDGE_PREFIX}*"'
    refuse = "reject with icmpx admin-prohibited"
    hairpin = (
        "ct state new meta l4proto { tcp, udp } ct original ip saddr . meta l4proto . "
        f"ct original proto-src . ct original proto-dst @job_flows {refuse}"
    )
    # A port the host publishes by DNAT (Docker's -p, say) is forwarded, not input: the host's.
    forward = [hairpin, f"iifname {jobs} ct status dnat {refuse}"]
    for net in networks:
        verdict = refuse if net.isolated_ports else "accept"
        forward.append(f'iifname "{net.bridge}" oifname "{net.bridge}" {verdict}')
    forward += [
        f"oifname {jobs} ct state established,related accept",
        f"oifname {jobs} drop",
        f"iifname {jobs} meta nfproto ipv6 {refuse}",
    ]
    for net in networks:
        if net.internal:
            forward.append(f'iifname "{net.bridge}" {refuse}')
    if nameservers:
        servers = ", ".join(nameservers)
        dns = f"ip daddr {{ {servers} }} meta l4proto {{ tcp, udp }} th dport 53"
        forward.append(f"iifname {jobs} {dns} accept")
    if allow_private:
        allowed = ", ".join(str(prefix) for prefix in allow_private)
        forward.append(f"iifname {jobs} ip daddr {{ {allowed} }} accept")
    forward.append(f"iifname {jobs} ip daddr {{ {', '.join(NAT_UNREACHABLE)} }} {refuse}")
    if owns_forwarding:
        forward.append(f"meta nfproto ipv4 iifname != {jobs} oifname != {jobs} drop")
    # fully-random: the job does not choose the port NAT gives its flow, so it cannot choose
    # which connections to the host the hairpin rule below refuses.
    nat = [
        f'ip saddr {net.cidr} oifname != "{net.bridge}" masquerade fully-random'
        for net in networks
        if net.nat
    ]
    # A job's flow out through NAT (not one within its network), as the outside sees it: (its
    # destination, protocol, the port NAT gave it, the destination port). If a new flow comes in
    # from that destination with the same (a 1:1 NAT in front of the host sends the host's own
    # public address back to it), it is the job's flow reaching the host: refused at input, and
    # in forward when the host rewrote it to a port it publishes by DNAT. Matched on the flow's
    # original tuple, as it came in before any DNAT.
    sources = ", ".join(str(net.cidr) for net in networks if net.nat)
    record = (
        [
            f"ct state new ct status snat ct original ip saddr {{ {sources} }} "
            "meta l4proto { tcp, udp } update @job_flows "
            "{ ct original ip daddr . meta l4proto . ct reply proto-dst . ct original proto-dst }"
        ]
        if sources
        else []
    )

    def chain(name: str, head: str, rules: list[str]) -> str:
        body = "".join(f"    {r}\n" for r in rules)
        return f"  chain {name} {{\n    {head}\n{body}  }}\n"

    flows = (
        "  set job_flows {\n"
        "    type ipv4_addr . inet_proto . inet_service . inet_service\n"
        f"    flags timeout; timeout {FLOW_TIMEOUT}; size {FLOWS_MAX}\n"
        "  }\n"
    )
    return (
        f"table inet {TABLE} {{\n"
        + flows
        + chain(
            "input",
            "type filter hook input priority filter - 5; policy accept;",
            [
                f"iifname {jobs} {refuse}",
                hairpin,
            ],
        )
        + chain("forward", "type filter hook forward priority filter - 5; policy accept;", forward)
        + chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", nat)
        # After the masquerade (srcnat), so that the flow's reply tuple holds its NAT port.
        + chain(
            "flows", "type filter hook postrouting priority srcnat + 10; policy accept;", record
        )
        + "}\n"
    )


# -- side effects ----------------------------------------------------------------------------


def _run(*argv: str, stdin: str | None = None) -> str:
    logger.debug("running %s", argv)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _links(kind: str) -> set[str]:
    data: list[dict[str, Any]] = json.loads(_run(IP, "-j", "link", "show", "type", kind) or "[]")
    return {str(link["ifname"]) for link in data}


def _by_link(addresses: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each interface's IPv4 addresses, from `ip -j -4 addr show`."""
    return {
        str(link["ifname"]): {f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", [])}
        for link in addresses
    }


def _addresses(net: Network) -> set[str]:
    """The bridge's own addresses: the gateway's, but for internal networks (no way out)."""
    return set() if net.internal else {f"{net.gateway}/{net.cidr.prefixlen}"}


def _host_addresses() -> tuple[list[HostPrefix], dict[str, set[str]]]:
    """The host's own networks (its addresses and routes), and every interface's addresses
    (Joblet's bridges' among them): one reading of each."""
    addresses = json.loads(_run(IP, "-j", "-4", "addr", "show") or "[]")
    routes = json.loads(_run(IP, "-j", "-4", "route", "show", "table", "all") or "[]")
    return host_prefixes(addresses, routes), _by_link(addresses)


def apply(state: HostState, report: Path) -> list[Conflict]:
    """Make the host match `state`, but for networks whose bridge is yet to be made and whose
    CIDR overlaps the host's own addresses or routes: those are left out, and returned. What the
    host has, and what was left out, is written to `report` for the agent."""
    bridges = {b for b in _links("bridge") if b.startswith(BRIDGE_PREFIX)}
    host, current = _host_addresses()
    # A bridge made or given another address (networks.isolated_cidr changed, say) is checked;
    # one kept as it is was checked when it was made.
    changing = [
        net
        for net in state.networks
        if net.bridge not in bridges or current.get(net.bridge, set()) != _addresses(net)
    ]
    found = conflicts(changing, host)
    write_atomic(
        report,
        json.dumps(
            {"conflicts": [c.to_dict() for c in found], "host": [str(p.prefix) for p in host]}
        ),
        mode=0o600,
    )
    refused = {c.network.name for c in found}
    networks = tuple(net for net in state.networks if net.name not in refused)
    for net in networks:
        if net.bridge not in bridges:
            # STP off and no forwarding delay: a job's port forwards as soon as it is up.
            _run(IP, "link", "add", net.bridge, "type", "bridge", "forward_delay", "0")
            _run(IP, "link", "set", net.bridge, "addrgenmode", "none")
            logger.info("made bridge %s for network %s", net.bridge, net.name)
        want = _addresses(net)
        if current.get(net.bridge, set()) != want:  # a bridge just made has none
            _run(IP, "addr", "flush", "dev", net.bridge)
            for address in want:
                _run(IP, "addr", "add", address, "dev", net.bridge)
        _run(IP, "link", "set", net.bridge, "up")
    # One nft transaction: the old table goes and the new one comes at the same instant. Rules
    # before removing bridges, so no moment has a bridge of a removed network without them; and
    # before forwarding is turned on, so no moment forwards what Joblet's rules do not allow.
    needed = any(net.nat for net in networks)
    ruleset = (
        host_ruleset(
            networks,
            owns_forwarding=_owns_forwarding(needed, state.forwarding_marker),
            allow_private=state.allow_private,
            nameservers=state.nameservers,
        )
        if networks
        else ""
    )
    _run(NFT, "-f", "-", stdin=f"table inet {TABLE}\ndelete table inet {TABLE}\n{ruleset}")
    wanted = {net.bridge for net in networks}
    # A network left out whose bridge exists keeps it as it is: its live jobs stay on it
    # (without a way out) rather than lose their link, and the host keeps its route.
    wanted |= {c.network.bridge for c in found if c.network.bridge in bridges}
    for bridge in sorted(bridges - wanted):
        _run(IP, "link", "delete", bridge)
        logger.info("removed bridge %s", bridge)
    for link in sorted(_links("veth")):
        if link.startswith(LINK_PREFIX) and link not in state.links:
            _run(IP, "link", "delete", link)
            logger.info("removed %s, left by a job that has ended", link)
    _forwarding(needed, state.forwarding_marker)
    return found


def _owns_forwarding(needed: bool, marker: Path) -> bool:
    """Whether IPv4 forwarding is (or is about to be) on because Joblet turned it on: then
    Joblet's rules forward nothing but job networks' traffic (review M7). Turned on by someone
    else (a router, Docker), it is theirs, and so is what it forwards."""
    return needed and (IP_FORWARD.read_text().strip() != "1" or marker.exists())


def _forwarding(needed: bool, marker: Path) -> None:
    """IPv4 forwarding is on while a NAT network exists. Joblet turns it off again only if it
    was the one to turn it on (the marker), never behind another user's back."""
    on = IP_FORWARD.read_text().strip() == "1"
    if needed and not on:
        IP_FORWARD.write_text("1\n")
        marker.touch()
        logger.info("turned IPv4 forwarding on (a NAT network exists)")
    elif not needed and on and marker.exists():
        IP_FORWARD.write_text("0\n")
        logger.info("turned IPv4 forwarding off (no NAT network is left)")
    if not needed:
        marker.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if len(argv) != 1:
        print("usage: python3 -m joblet_agent.adapters.netlink STATE.json", file=sys.stderr)
        return 2
    state_file = Path(argv[0])
    try:
        found = apply(HostState.from_json(state_file.read_text()), state_file.with_name(REPORT))
    except (OSError, RuntimeError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    for conflict in found:
        logger.error(
            "network %s (%s) not made: it overlaps the host's %s",
            conflict.network.name,
            conflict.network.cidr,
            conflict.host.what,
        )
    return 0  # what was left out is the report's to say; the rest of the host is as asked


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
