"""Host names to addresses, for egress rules that name a host (docs/networking.md)."""

from __future__ import annotations

import asyncio
import socket


async def resolve_ipv4(host: str) -> tuple[str, ...]:
    """The host's IPv4 addresses, by the agent host's resolver (its /etc/hosts, and DNS as far as
    the agent's private network namespace reaches: systemd-resolved over its Unix socket)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, family=socket.AF_INET, type=socket.SOCK_STREAM)
    return tuple(sorted({str(info[4][0]) for info in infos}))
