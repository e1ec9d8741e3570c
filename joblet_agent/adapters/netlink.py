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
from pathlib import Path
from typing import Any

from joblet_agent.domain.network import BRIDGE_PREFIX, LINK_PREFIX, HostState, Network

logger = logging.getLogger(__name__)

IP = "/usr/bin/ip"
NFT = "/usr/sbin/nft"
TABLE = "joblet"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Link-local: cloud metadata services (169.254.169.254) hand out credentials to whoever asks.
LINK_LOCAL = "169.254.0.0/16"


def host_ruleset(networks: Sequence[Network]) -> str:
    """The whole `inet joblet` table (pure; tests/unit pin it). Job networks reach each other
    only within themselves; nothing from a job network reaches the host itself; NAT networks
    reach the outside (but not link-local addresses), internal ones nothing beyond themselves.
    Refusals of job traffic are rejects (a quick error), traffic towards jobs is dropped."""
    all_bridges = f'"{BRIDGE_PREFIX}*"'
    forward = []
    for net in networks:
        verdict = "reject with icmpx admin-prohibited" if net.isolated_ports else "accept"
        forward.append(f'iifname "{net.bridge}" oifname "{net.bridge}" {verdict}')
    forward += [
        f"oifname {all_bridges} ct state established,related accept",
        f"oifname {all_bridges} drop",
        f"iifname {all_bridges} meta nfproto ipv6 reject with icmpx admin-prohibited",
        f"iifname {all_bridges} ip daddr {LINK_LOCAL} reject with icmpx admin-prohibited",
    ]
    for net in networks:
        if net.internal:
            forward.append(f'iifname "{net.bridge}" reject with icmpx admin-prohibited')
    nat = [
        f'ip saddr {net.cidr} oifname != "{net.bridge}" masquerade' for net in networks if net.nat
    ]

    def chain(name: str, head: str, rules: list[str]) -> str:
        body = "".join(f"    {r}\n" for r in rules)
        return f"  chain {name} {{\n    {head}\n{body}  }}\n"

    return (
        f"table inet {TABLE} {{\n"
        + chain(
            "input",
            "type filter hook input priority filter - 5; policy accept;",
            [f"iifname {all_bridges} reject with icmpx admin-prohibited"],
        )
        + chain("forward", "type filter hook forward priority filter - 5; policy accept;", forward)
        + chain("postrouting", "type nat hook postrouting priority srcnat; policy accept;", nat)
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


def _ipv4_addresses(device: str) -> set[str]:
    data: list[dict[str, Any]] = json.loads(_run(IP, "-j", "-4", "addr", "show", "dev", device))
    return {f"{a['local']}/{a['prefixlen']}" for link in data for a in link.get("addr_info", [])}


def apply(state: HostState) -> None:
    bridges = {b for b in _links("bridge") if b.startswith(BRIDGE_PREFIX)}
    for net in state.networks:
        if net.bridge not in bridges:
            # STP off and no forwarding delay: a job's port forwards as soon as it is up.
            _run(IP, "link", "add", net.bridge, "type", "bridge", "forward_delay", "0")
            _run(IP, "link", "set", net.bridge, "addrgenmode", "none")
            logger.info("made bridge %s for network %s", net.bridge, net.name)
        want = set() if net.internal else {f"{net.gateway}/{net.cidr.prefixlen}"}
        if _ipv4_addresses(net.bridge) != want:
            _run(IP, "addr", "flush", "dev", net.bridge)
            for address in want:
                _run(IP, "addr", "add", address, "dev", net.bridge)
        _run(IP, "link", "set", net.bridge, "up")
    # One nft transaction: the old table goes and the new one comes at the same instant. Rules
    # before removing bridges, so no moment has a bridge of a removed network without them.
    ruleset = host_ruleset(state.networks) if state.networks else ""
    _run(NFT, "-f", "-", stdin=f"table inet {TABLE}\ndelete table inet {TABLE}\n{ruleset}")
    wanted = {net.bridge for net in state.networks}
    for bridge in sorted(bridges - wanted):
        _run(IP, "link", "delete", bridge)
        logger.info("removed bridge %s", bridge)
    for link in sorted(_links("veth")):
        if link.startswith(LINK_PREFIX) and link not in state.links:
            _run(IP, "link", "delete", link)
            logger.info("removed %s, left by a job that has ended", link)
    _forwarding(any(net.nat for net in state.networks), state.forwarding_marker)


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
    try:
        apply(HostState.from_json(Path(argv[0]).read_text()))
    except (OSError, RuntimeError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
