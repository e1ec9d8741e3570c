"""What this host can do: CPUs, memory, systemd's version, the cgroup controllers systemd drives.

Plain data (adapters/host_probe.py probes it once at start-up) that the pure translation layer
and the validator take as input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Controller(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    IO = "io"
    PIDS = "pids"
    CPUSET = "cpuset"


class CgroupMode(StrEnum):
    UNIFIED = "unified"  # cgroup v2 only
    HYBRID = "hybrid"  # v1 controllers plus an (often empty) v2 tree for systemd
    LEGACY = "legacy"
    NONE = "none"


# In hybrid/legacy mode systemd drives these v1 hierarchies (v1 name -> the limit it carries).
# It never drives the v1 cpuset: AllowedCPUs= only works on v2; CPUAffinity= works everywhere.
V1_DRIVEN = {
    "cpu": Controller.CPU,
    "memory": Controller.MEMORY,
    "blkio": Controller.IO,
    "pids": Controller.PIDS,
}


@dataclass(frozen=True, slots=True)
class HostInfo:
    cpus: tuple[int, ...]  # online CPU numbers
    memory_bytes: int
    systemd_version: int
    cgroup_mode: CgroupMode
    controllers: frozenset[Controller]
    # "MAJ:MIN" of the block device backing the jobs' writable directories, found by stat;
    # None when they live on tmpfs, overlayfs or another device-less filesystem.
    io_device: str | None
    # How many tasks the kernel allows at once (min of kernel.pid_max and kernel.threads-max);
    # None if it could not be read.
    task_limit: int | None = None

    @property
    def unenforced(self) -> list[str]:
        """Controllers systemd cannot drive here. Not cpuset: pinning works through CPUAffinity."""
        return sorted(str(c) for c in set(Controller) - self.controllers - {Controller.CPUSET})

    @property
    def reports_oom_kills(self) -> bool:
        """Whether systemd tells an OOM kill from a plain SIGKILL: only with cgroup v2's memory
        controller (it reads memory.events); on v1 the kernel's log does (units/kernel_log.py)."""
        return self.cgroup_mode is CgroupMode.UNIFIED or Controller.MEMORY not in self.controllers

    @property
    def has_private_pids(self) -> bool:
        return self.systemd_version >= 257  # PrivatePIDs= appeared in systemd 257

    def describe(self) -> dict[str, object]:
        return {
            "cpus": len(self.cpus),
            "memory_bytes": self.memory_bytes,
            "systemd_version": self.systemd_version,
            "cgroup_mode": str(self.cgroup_mode),
            "controllers": sorted(str(c) for c in self.controllers),
            "io_device": self.io_device,
        }
