"""The names a certificate carries: this host's for the server's SANs, a client's CN, and the
rnx-config.yml a client certificate comes with."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import pwd
import re
import socket
import subprocess
from collections.abc import Sequence

import yaml

from joblet_agent.errors import invalid

DEFAULT_PORT = 50051
ROLES = ("reader", "developer", "maintainer", "admin")
MAX_CLIENT_DAYS = 3650


_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def rnx_config(node: str, address: str) -> bytes:
    """rnx-config.yml; the paths are relative to the file's own directory."""
    text = (
        f"default: {_yaml_str(node)}\n"
        "nodes:\n"
        f"  {_yaml_str(node)}:\n"
        f"    address: {json.dumps(address)}\n"
        '    cert: "client.crt"\n'
        '    key: "client.key"\n'
        '    ca: "ca.crt"\n'
    )
    return text.encode()


def server_names(extra: Sequence[str] = ()) -> tuple[list[str], list[IP]]:
    """The server certificate's DNS and IP SANs: this host's names and addresses, then `extra`."""
    dns = [socket.gethostname().lower(), host_fqdn().lower(), "localhost"]
    ips: list[IP] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    ips += host_addresses()
    for value in extra:
        parsed = _parse_server_name(value)
        if isinstance(parsed, str):
            dns.append(parsed)
        else:
            ips.append(parsed)
    return list(dict.fromkeys(n for n in dns if _is_dns_name(n))), list(dict.fromkeys(ips))


def host_fqdn() -> str:
    """getfqdn(), unless it found a name of something else (often "localhost" via /etc/hosts)."""
    hostname = socket.gethostname()
    fqdn = socket.getfqdn(hostname)
    return fqdn if fqdn.split(".")[0] == hostname.split(".")[0] else hostname


def host_addresses() -> list[IP]:
    """This host's routable addresses, best effort and without any network traffic."""
    found = _addresses_from_ip_command() + _addresses_from_resolver()
    return [a for a in dict.fromkeys(found) if _is_host_address(a)]


def _addresses_from_ip_command() -> list[IP]:
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, timeout=5, check=True)
        links = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found: list[IP] = []
    for link in links if isinstance(links, list) else []:
        for info in link.get("addr_info", []) if isinstance(link, dict) else []:
            with contextlib.suppress(ValueError, TypeError):
                found.append(ipaddress.ip_address(info["local"]))
    return found


def _addresses_from_resolver() -> list[IP]:
    # Only the local resolver: the host's own name is in /etc/hosts or nss-myhostname.
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    found: list[IP] = []
    for *_, sockaddr in infos:
        with contextlib.suppress(ValueError):
            found.append(ipaddress.ip_address(str(sockaddr[0]).partition("%")[0]))
    return found


def _is_host_address(address: IP) -> bool:
    # Link-local addresses need a zone the client cannot put in a URL usefully; loopback is added
    # explicitly; 0.0.0.0 and :: name no host at all.
    return not (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    )


def _parse_server_name(value: str) -> str | IP:
    text = value.strip().lower()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        if not _is_dns_name(text):
            raise invalid("server name", value, "give a DNS name or an IP address") from None
        return text
    if address.is_unspecified:
        raise invalid("server name", value, "0.0.0.0 and :: name no host; give a real address")
    return address


def _is_dns_name(text: str) -> bool:
    return 0 < len(text) <= 253 and all(_DNS_LABEL.match(label) for label in text.split("."))


def _yaml_str(value: str) -> str:
    # A host named "1234" or "yes" would otherwise load as a number or a boolean.
    return value if yaml.safe_load(value) == value else json.dumps(value)


_CLIENT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


# Names a client certificate may not have (security-audit L7). Owners from certificates and from
# local users never meet (cert:NAME, unix:NAME: domain/owner.py), but a certificate named like
# root, a role, a system account or Joblet's own users would still read as one in every listing.
RESERVED_NAMES = frozenset({"root", "nobody", "admin", "administrator", *ROLES, "cert", "unix"})
RESERVED_PREFIXES = ("joblet-", "systemd-")
SYSTEM_UID_MAX = 999  # login.defs' SYS_UID_MAX on Debian


def reserved_because(name: str) -> str | None:
    """Why `name` may not be a client's, or None."""
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return "it is reserved (root, nobody, the role names, joblet-*, systemd-*)"
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return None
    if uid <= SYSTEM_UID_MAX:
        return f"it is reserved: this host's system account {name} has uid {uid}"
    return None


def check_client(name: str, role: str, days: int) -> None:
    if not _CLIENT_NAME.match(name):
        raise invalid("name", name, "use 1-63 of a-z 0-9 . _ - starting with a letter or digit")
    why = reserved_because(name)
    if why is not None:
        raise invalid("name", name, f"{why}; choose a person's or a service's own name")
    if role not in ROLES:
        raise invalid("role", role, f"use one of {', '.join(ROLES)}")
    if not 1 <= days <= MAX_CLIENT_DAYS:
        raise invalid("days", days, f"use 1 to {MAX_CLIENT_DAYS}")


def check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise invalid("address", address, "use HOST:PORT, e.g. node1.example.com:50051")
