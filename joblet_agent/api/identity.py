"""Who is calling: the verified client certificate on TCP, SO_PEERCRED on the Unix socket.

Certificate: CN is the caller's name (and jobs' owner); OU is the role. Several role OUs: the
least privileged wins; an OU that is not a role refuses the certificate. Unix socket: uid 0 is
admin; other users get the most privileged role that config maps one of their groups to, or none.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import ssl
import struct

from aiohttp import web

from joblet_agent.api.keys import app_key, request_key
from joblet_agent.api.tls import peer_identity
from joblet_agent.domain.config import Access
from joblet_agent.domain.rbac import Caller, Role
from joblet_agent.errors import ErrorCode, JobletError

ACCESS = app_key("access", Access)
CALLER = request_key("joblet.caller", Caller)


def caller_of(request: web.Request) -> Caller:
    """The request's caller, computed once per request."""
    cached = request.get(CALLER)
    if isinstance(cached, Caller):
        return cached
    caller = _identify(request)
    request[CALLER] = caller
    return caller


def _identify(request: web.Request) -> Caller:
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport else None
    if isinstance(ssl_object, ssl.SSLObject):
        return caller_from_certificate(*peer_identity(ssl_object))
    sock = transport.get_extra_info("socket") if transport else None
    if sock is not None and sock.family == socket.AF_UNIX:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, gid = struct.unpack("3i", creds)
        return caller_from_uid(uid, gid, request.app[ACCESS])
    raise JobletError(ErrorCode.UNAUTHENTICATED, "no client certificate was presented")


def caller_from_certificate(name: str, units: tuple[str, ...]) -> Caller:
    known = {r.value for r in Role}
    unknown = [u for u in units if u not in known]
    if not units or unknown:
        shown = ", ".join(repr(u) for u in unknown) or "none"
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"certificate of {name!r}: organizational unit {shown} is not a Joblet role",
            hint="issue a certificate with joblet-agent pki client --role reader|developer|...",
        )
    return Caller(name=name, role=Role.least([Role(u) for u in units]), transport="tls")


def caller_from_uid(uid: int, gid: int, access: Access) -> Caller:
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid-{uid}"
    if uid == 0:
        return Caller(name=user, role=Role.ADMIN, transport="unix")
    try:
        groups = {grp.getgrgid(g).gr_name for g in os.getgrouplist(user, gid)}
    except KeyError:
        groups = set()
    roles = [role for group, role in access.local_groups.items() if group in groups]
    if not roles:
        raise JobletError(
            ErrorCode.FORBIDDEN,
            f"local user {user} has no Joblet role",
            hint="run rnx as root, or map one of the user's groups in joblet.yml "
            "access.local_groups",
        )
    return Caller(name=user, role=Role.most(roles), transport="unix")
