"""Each owner's slice: `joblet-owner-<owner>.slice`, where all of the owner's jobs run, with the
owner's quota (domain/capacity.py) as its properties, so the kernel enforces it over all of them
together. Pure.

systemd reads a slice's place in the tree from its name, cutting at each '-': the slice of job
owner `alice` under `joblet.slice` is `joblet-owner-alice.slice`, inside the implicit
`joblet-owner.slice`, inside `joblet.slice`. An owner's name is anything a certificate's CN or a
user name may hold (`bob-smith`, `cert:alice`, non-ASCII), so it is escaped the way systemd
escapes strings into unit names (`systemd-escape`: every byte outside [A-Za-z0-9:_.] as `\\xNN`,
a leading '.' too), with one difference: '/' is escaped as well, never turned into '-'. So the
escaped name has no '-', and no owner can place their slice under another's. A name whose escape
is too long for a unit name (255 bytes) becomes '.' and a SHA-256 of it: no escaped name starts
with '.', so the two kinds never meet.
"""

from __future__ import annotations

import hashlib

from joblet_agent.domain.capacity import OwnerQuota
from joblet_agent.units.properties import Property, prop

UINT64_MAX = 2**64 - 1  # systemd's "infinity" for MemoryMax, TasksMax, CPUQuotaPerSecUSec
USEC_PER_SEC = 1_000_000
MAX_UNIT_NAME = 255
_KEPT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def escape_owner(owner: str) -> str:
    """An owner's name as one component of a unit name: no '-', no '/', only valid characters."""
    if not owner:
        raise ValueError("an owner's name is never empty")
    out = []
    for index, byte in enumerate(owner.encode("utf-8", errors="surrogatepass")):
        if byte in _KEPT and not (index == 0 and byte == ord(".")):
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out)


def owner_slice(parent: str, owner: str) -> str:
    """The slice of `owner`'s jobs inside `parent` (joblet.yml's `slice`, joblet.slice)."""
    stem = f"{parent.removesuffix('.slice')}-owner-"
    escaped = escape_owner(owner)
    if len(stem) + len(escaped) + len(".slice") > MAX_UNIT_NAME:
        escaped = "." + hashlib.sha256(owner.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{stem}{escaped}.slice"


def slice_properties(quota: OwnerQuota) -> list[Property]:
    """The owner's quota on their slice (SetUnitProperties, runtime: kept in /run until a
    reboot); every property is set, to infinity when the quota has none, so a quota removed
    from joblet.yml is lifted at the agent's next start."""

    def most(value: int | None) -> int:
        return UINT64_MAX if value is None else value

    cpu = None if quota.cpu_percent is None else quota.cpu_percent * USEC_PER_SEC // 100
    return [
        prop("MemoryAccounting", True),
        prop("TasksAccounting", True),
        prop("CPUAccounting", True),
        prop("MemoryMax", most(quota.memory_bytes)),
        # Swap would let an owner's jobs live past the quota (jobs have MemorySwapMax=0 too).
        prop("MemorySwapMax", 0 if quota.memory_bytes is not None else UINT64_MAX),
        prop("CPUQuotaPerSecUSec", most(cpu)),
        prop("TasksMax", most(quota.max_tasks)),
        prop("CPUWeight", quota.cpu_weight),
    ]
