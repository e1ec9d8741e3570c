"""Volumes: named storage that outlives jobs, shared by the jobs that mount it.

A `filesystem` volume is a sparse ext4 image of a fixed size (writing past it is ENOSPC), kept
under the state directory, so it survives jobs, agent restarts and reboots. A `memory` volume is
a tmpfs of a fixed size: fast, counted against the host's memory, gone at reboot (its record
stays; it comes back empty). Either is mounted once on the host by PID 1 (a transient mount unit)
and bound into each job that names it at /volumes/<name>.

A volume belongs to whoever made it (`owner`), who may share it with others, read-only or not
(domain/sharing.py). Records of older agents name only `created_by`: its owner is then that
name, read as domain/owner.py's legacy_owner says.

Jobs run as different users, so a volume belongs to a group of its own that every job mounting
it joins; its root is setgid to that group with a default ACL of rwx for the group, so what one
job writes the next one can read and write, whatever umask its programs use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.fields import Fields
from joblet_agent.domain.owner import legacy_owner
from joblet_agent.domain.quantities import parse_size
from joblet_agent.domain.sharing import Share, Shared, shares_from
from joblet_agent.errors import ErrorCode, JobletError, excerpt

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
NAME_RULE = "1-63 of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
MIN_BYTES = 8 * 1024**2
MAX_PER_JOB = 32
GROUP_OFFSET = 0x10000  # volume groups start this far above the pool's first UID
MAX_VOLUMES = 4096
GROUP_PREFIX = "joblet-v"


class VolumeType(StrEnum):
    FILESYSTEM = "filesystem"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class Volume:
    name: str
    type: VolumeType
    size_bytes: int
    slot: int  # its group's place in the agent's range
    created_at: datetime
    created_by: str
    owner: str  # cert:NAME or unix:NAME (domain/owner.py)
    shares: tuple[Share, ...] = ()

    @property
    def shared(self) -> Shared:
        return Shared("volume", self.name, self.owner, self.shares)

    def gid(self, policy: JobPolicy) -> int:
        return policy.uid_base + GROUP_OFFSET + self.slot

    @property
    def group(self) -> str:
        return f"{GROUP_PREFIX}{self.slot}"

    @property
    def persistent(self) -> bool:
        return self.type is VolumeType.FILESYSTEM

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.type),
            "size_bytes": self.size_bytes,
            "slot": self.slot,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "owner": self.owner,
            "shares": [s.to_dict() for s in self.shares],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Volume:
        return cls(
            name=data["name"],
            type=VolumeType(data["type"]),
            size_bytes=int(data["size_bytes"]),
            slot=int(data["slot"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            created_by=data["created_by"],
            owner=data.get("owner") or legacy_owner(data["created_by"]),
            shares=shares_from(data.get("shares", ())),
        )


@dataclass(frozen=True, slots=True)
class VolumeRequest:
    name: str
    type: VolumeType
    size_bytes: int


def check_name(where: str, name: object) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise JobletError(
            ErrorCode.INVALID, f"{where}: {excerpt(name)} is not a valid volume name; {NAME_RULE}"
        )
    return name


def parse_volume_request(data: object, *, max_bytes: int, memory_bytes: int) -> VolumeRequest:
    top = Fields(data, "")
    name = check_name("name", top.required_string("name"))
    kind = top.string("type", str(VolumeType.FILESYSTEM))
    if kind not in {t.value for t in VolumeType}:
        raise top.error("type", kind, "allowed: filesystem, memory")
    volume_type = VolumeType(kind)
    size = top.parsed("size", parse_size)
    if size is None:
        raise top.error("size", None, "a size is required, e.g. 1G, 512M, 10GB")
    most = memory_bytes if volume_type is VolumeType.MEMORY else max_bytes
    if not MIN_BYTES <= size <= most:
        raise top.error(
            "size",
            top.raw("size"),
            f"between {MIN_BYTES >> 20}M and {most >> 20}M ({most} bytes) for a {kind} volume",
        )
    top.reject_unknown()
    return VolumeRequest(name=name, type=volume_type, size_bytes=size)


@dataclass(frozen=True, slots=True)
class VolumeMount:
    """A job's use of a volume."""

    name: str
    read_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "read_only": self.read_only}


def parse_volume_mounts(top: Fields, key: str) -> tuple[VolumeMount, ...]:
    raw = top.raw(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise top.error(key, raw, "a list of {name, read_only}")
    if len(raw) > MAX_PER_JOB:
        raise top.error(key, f"{len(raw)} volumes", f"at most {MAX_PER_JOB}")
    mounts: list[VolumeMount] = []
    for index, item in enumerate(raw):
        entry = Fields(item, top.where(f"{key}[{index}]"))
        name = check_name(entry.where("name"), entry.required_string("name"))
        if any(m.name == name for m in mounts):
            raise entry.error("name", name, "each volume may be named once")
        mounts.append(VolumeMount(name=name, read_only=entry.boolean("read_only", False)))
        entry.reject_unknown()
    return tuple(mounts)
