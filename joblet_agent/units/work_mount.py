"""Each job's /work is a filesystem of its own, capped in size: a sparse ext4 image in the job's
directory, loop-mounted by PID 1 as a transient mount unit, bound into the job at /work.

A mount unit rather than a mount by the agent: the agent's own mount namespace is private, and
PID 1 tears a mount unit down (unmount, loop device detached) when asked, or at shutdown.
"""

from __future__ import annotations

from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property, prop

MOUNT_OPTIONS = "loop,nosuid,nodev"
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_.")


def mount_unit_name(where: str) -> str:
    """systemd-escape --path --suffix=mount: /var/lib/x-y -> var-lib-x\\x2dy.mount"""
    parts = []
    for index, char in enumerate(where.strip("/")):
        if char == "/":
            parts.append("-")
        elif char in _SAFE and not (index == 0 and char == "."):
            parts.append(char)
        else:
            parts.extend(f"\\x{byte:02x}" for byte in char.encode())
    return "".join(parts) + ".mount"


def work_mount_prefix(jobs_dir: str) -> str:
    """What every job's /work mount unit name starts with (to filter systemd's signals)."""
    return mount_unit_name(jobs_dir).removesuffix(".mount") + "-"


def work_mount_pattern(jobs_dir: str) -> str:
    """A glob matching every job's /work mount unit, for ListUnitsByPatterns."""
    return mount_unit_name(jobs_dir).removesuffix(".mount") + "-*-work.mount"


def work_mount_unit(paths: JobPaths) -> str:
    return mount_unit_name(str(paths.work))


def work_mount_properties(paths: JobPaths, job_id: str) -> list[Property]:
    return [
        prop("Description", f"Joblet job {job_id} /work"),
        prop("What", str(paths.work_image)),
        prop("Type", "ext4"),
        prop("Options", MOUNT_OPTIONS),
    ]
