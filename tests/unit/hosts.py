"""Fixed host facts for unit tests: the translation must not depend on the machine running them."""

from __future__ import annotations

from joblet_agent.domain.host import CgroupMode, Controller, HostInfo

HYBRID_HOST = HostInfo(
    cpus=(0, 1, 2, 3),
    memory_bytes=8 * 1024**3,
    systemd_version=252,
    cgroup_mode=CgroupMode.HYBRID,
    controllers=frozenset({Controller.CPU, Controller.MEMORY, Controller.IO, Controller.PIDS}),
    io_device="254:0",
)

BARE_V2_HOST = HostInfo(
    cpus=(0, 1),
    memory_bytes=4 * 1024**3,
    systemd_version=257,
    cgroup_mode=CgroupMode.UNIFIED,
    controllers=frozenset(),
    io_device=None,
)
