"""Owners: whom a job, an upload, a volume or a network belongs to. Pure: no I/O.

An owner is `cert:NAME`, a client certificate's CN, or `unix:NAME`, a local user on the local
socket. The two namespaces never meet (security-audit L7): a certificate whose CN is `root`, or
the name of a local account, is `cert:root`, and owns nothing of `unix:root`'s.

Records written before owners had a namespace hold a bare name; `legacy_owner` says whose it
was: `root` and `uid-N` could only come from the local socket, anything else is taken for a
certificate (local users other than root had a role only through access.local_groups).
"""

from __future__ import annotations

import re

from joblet_agent.errors import ErrorCode, JobletError, excerpt

CERT = "cert"
UNIX = "unix"
NAMESPACES = (CERT, UNIX)
LOCAL_ADMIN = f"{UNIX}:root"  # root on the local socket; owns what no one else was recorded for
# A certificate's CN (pki/names.py) or a local user's name (useradd's rule, and "uid-N" for a
# uid without an entry): no ':' and no blanks, so "ns:name" splits one way only.
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.$-]{0,63}$")
NAME_RULE = "1-64 of A-Z a-z 0-9 . _ - (and a final $)"
_LOCAL_ONLY = re.compile(r"^(root|uid-[0-9]+)$")


def owner_of(namespace: str, name: str) -> str:
    return f"{namespace}:{name}"


def split_owner(owner: str) -> tuple[str, str]:
    namespace, _, name = owner.partition(":")
    return namespace, name


def parse_owner(where: str, text: object, *, namespace: str) -> str:
    """`NAME` (in `namespace`: the caller's own) or `cert:NAME` / `unix:NAME`."""
    if not isinstance(text, str):
        raise JobletError(ErrorCode.INVALID, f"{where}: {excerpt(text)} is not an owner")
    given, colon, name = text.partition(":")
    if not colon:
        given, name = namespace, text
    if given not in NAMESPACES or not _NAME.match(name):
        raise JobletError(
            ErrorCode.INVALID,
            f"{where}: {excerpt(text)} is not an owner; give NAME, cert:NAME (a certificate's "
            f"name) or unix:NAME (a local user), NAME being {NAME_RULE}",
        )
    return owner_of(given, name)


def legacy_owner(text: str) -> str:
    """The owner a record of an older agent meant (see the module's docstring)."""
    namespace, colon, _ = text.partition(":")
    if colon and namespace in NAMESPACES:
        return text
    return owner_of(UNIX if _LOCAL_ONLY.match(text) else CERT, text)
