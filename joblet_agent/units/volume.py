"""Volumes as unit properties: the mount unit PID 1 keeps a volume mounted with, and what a job
that names volumes gets. Pure, like translate.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from joblet_agent.domain.volume import Volume, VolumeType
from joblet_agent.units.properties import Property, prop

VOLUMES = PurePosixPath("/volumes")  # inside every job that names a volume


def escape_path(path: PurePosixPath) -> str:
    """systemd-escape --path: the name a mount unit for `path` must have."""
    text = str(path).strip("/")
    out = []
    for index, char in enumerate(text):
        if char == "/":
            out.append("-")
        elif (char.isascii() and char.isalnum()) or char in ":_" or (char == "." and index):
            out.append(char)
        else:
            out.append("".join(f"\\x{b:02x}" for b in char.encode()))
    return "".join(out) or "-"


def mount_unit(where: PurePosixPath) -> str:
    return f"{escape_path(where)}.mount"


def mount_properties(
    volume: Volume, *, image: PurePosixPath, where: PurePosixPath, gid: int
) -> list[Property]:
    common = "nosuid,nodev"
    if volume.type is VolumeType.MEMORY:
        what, fstype = "tmpfs", "tmpfs"
        options = f"{common},size={volume.size_bytes},mode=0770,uid=0,gid={gid}"
    else:
        what, fstype = str(image), "ext4"
        options = f"{common},loop"
    return [
        prop("Description", f"Joblet volume {volume.name} ({volume.type})"),
        prop("What", what),
        prop("Where", str(where)),
        prop("Type", fstype),
        prop("Options", options),
    ]


@dataclass(frozen=True, slots=True)
class VolumeBinding:
    """A volume as one job gets it: where it is mounted on the host, and how."""

    name: str
    host_path: PurePosixPath
    group: str
    read_only: bool


def job_volume_properties(bindings: tuple[VolumeBinding, ...]) -> list[Property]:
    if not bindings:
        return []
    # /volumes is a small tmpfs of the job's own, so the mount points of its volumes are made
    # there, never in the shared skeleton root (where other jobs would see the names).
    props = [prop("TemporaryFileSystem", [[str(VOLUMES), "mode=0755,size=64k,nosuid,nodev"]])]
    writable = [
        [str(b.host_path), str(VOLUMES / b.name), False, 0] for b in bindings if not b.read_only
    ]
    read_only = [
        [str(b.host_path), str(VOLUMES / b.name), False, 0] for b in bindings if b.read_only
    ]
    if writable:
        props.append(prop("BindPaths", writable))
    if read_only:
        props.append(prop("BindReadOnlyPaths", read_only))
    props += [
        prop("SupplementaryGroups", sorted({b.group for b in bindings})),
        # Started only with its volumes mounted; and a volume's mount is not stopped under it.
        prop("RequiresMountsFor", [str(b.host_path) for b in bindings]),
    ]
    return props
