"""Who is calling: from SO_PEERCRED on the Unix socket (the TLS certificate comes later)."""

from __future__ import annotations

import pwd
import socket
import struct
from dataclasses import dataclass

from aiohttp import web

from joblet_agent.errors import ErrorCode, JobletError


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    is_admin: bool


def caller_of(request: web.Request) -> Caller:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        raise JobletError(ErrorCode.UNAUTHENTICATED, "only the local Unix socket is served yet")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != 0:
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"local user with uid {uid} has no Joblet role",
            hint="run rnx as root",
        )
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid-{uid}"
    return Caller(name=name, is_admin=True)
