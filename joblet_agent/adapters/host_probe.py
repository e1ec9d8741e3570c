"""Probing the host once at start-up: CPUs, memory, systemd's version, the cgroup controllers
systemd drives, the block device of the state directory. Reads /proc and /sys and asks
`systemctl --version`; never writes cgroupfs. The result is domain.host.HostInfo, plain data.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

from joblet_agent.domain.host import V1_DRIVEN, CgroupMode, Controller, HostInfo
from joblet_agent.domain.quantities import parse_cpuset

logger = logging.getLogger(__name__)


def probe_host(state_dir: Path) -> HostInfo:
    mode, controllers = _probe_cgroups(Path("/proc/self/mountinfo").read_text())
    info = HostInfo(
        cpus=tuple(sorted(os.sched_getaffinity(0) | _online_cpus())),
        memory_bytes=_memory_total(),
        systemd_version=_systemd_version(),
        cgroup_mode=mode,
        controllers=controllers,
        io_device=_block_device_of(state_dir),
        task_limit=_task_limit(),
    )
    logger.info("host: %s", info.describe())
    return info


def _online_cpus() -> set[int]:
    try:
        text = Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return set()
    return set(parse_cpuset(text))


def _memory_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


def _task_limit() -> int | None:
    try:
        return min(
            int(Path("/proc/sys/kernel", name).read_text()) for name in ("pid_max", "threads-max")
        )
    except (OSError, ValueError):
        return None


def _systemd_version() -> int:
    out = subprocess.run(["systemctl", "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"systemd (\d+)", out.stdout)
    if not match:
        raise RuntimeError(f"cannot read the systemd version from {out.stdout[:80]!r}")
    return int(match.group(1))


def _probe_cgroups(mountinfo: str) -> tuple[CgroupMode, frozenset[Controller]]:
    """Read which controllers exist from the mount table, the way systemd itself decides."""
    v1: set[str] = set()
    v2_roots: list[str] = []
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, options = [*right.split(), "", "", ""][:3]
        mountpoint = left.split()[4]
        if fstype == "cgroup":
            v1.update(options.split(","))
        elif fstype == "cgroup2":
            v2_roots.append(mountpoint)
    v2: set[str] = set()
    for root in v2_roots:
        try:
            v2.update(Path(root, "cgroup.controllers").read_text().split())
        except OSError:
            continue
    if "/sys/fs/cgroup" in v2_roots:
        mode = CgroupMode.UNIFIED
    elif v1 and v2_roots:
        mode = CgroupMode.HYBRID
    elif v1:
        mode = CgroupMode.LEGACY
    else:
        mode = CgroupMode.NONE
    if mode is CgroupMode.UNIFIED:
        found = {Controller(name) for name in v2 if name in set(Controller)}
    else:
        # In hybrid mode systemd uses the v2 tree only to track processes, never for limits.
        found = {ctrl for name, ctrl in V1_DRIVEN.items() if name in v1}
    return mode, frozenset(found)


def _block_device_of(path: Path) -> str | None:
    """The block device backing `path`, by stat (never a hard-coded major:minor)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    dev = probe.stat().st_dev
    number = f"{os.major(dev)}:{os.minor(dev)}"
    # tmpfs, overlay and friends have anonymous devices (major 0): nothing to throttle.
    return number if Path("/sys/dev/block", number).exists() else None
