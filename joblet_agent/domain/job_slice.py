"""What all jobs together may take: the caps of joblet.slice, from joblet.yml's `all_jobs:` or,
where it says nothing, from the host. Pure.

Each job has limits of its own, but a thousand jobs each within its limits can still take all of
the host's memory, tasks or CPU: the slice holding them all is capped too, so the agent (in
system.slice, outside it) and the host keep room. The agent sets these on the slice at every
start (SetUnitProperties, services/job/slice_caps.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from joblet_agent.domain.fields import Fields
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.quantities import parse_size

GIB = 1024**3
# The least the slice may get: below these not even one default job would start.
MIN_MEMORY = 64 * 1024**2
MIN_TASKS = 16
MIN_CPU_PERCENT = 10


@dataclass(frozen=True, slots=True)
class SliceCaps:
    """joblet.slice's MemoryMax (bytes), TasksMax and CPU quota (percent of one core). In
    joblet.yml, None means "computed from the host" (for_host); once resolved, None means none
    (a host whose kernel's task limit could not be read)."""

    memory_bytes: int | None = None
    tasks: int | None = None
    cpu_percent: int | None = None

    def for_host(self, host: HostInfo) -> SliceCaps:
        """The caps to set on this host: each one joblet.yml gives, else the host's default."""
        return SliceCaps(
            memory_bytes=self.memory_bytes or default_memory(host.memory_bytes),
            tasks=self.tasks or (default_tasks(host.task_limit) if host.task_limit else None),
            cpu_percent=self.cpu_percent or default_cpu_percent(len(host.cpus)),
        )

    def describe(self) -> dict[str, int | None]:
        return {"memory_bytes": self.memory_bytes, "tasks": self.tasks, "cpu": self.cpu_percent}


def default_memory(total: int) -> int:
    """The host's memory less a reserve for the host and the agent (whose own cap is 1 GiB):
    10% of it, at least 1 GiB, but never more than half (24 GiB -> 21.6 GiB, 4 GiB -> 3 GiB,
    1.5 GiB -> 768 MiB)."""
    reserve = min(max(total // 10, GIB), total // 2)
    return max(total - reserve, MIN_MEMORY)


def default_tasks(kernel_limit: int) -> int:
    """80% of what the kernel allows at once (min of kernel.pid_max and kernel.threads-max):
    the rest is the host's, so a fork bomb spread over many jobs leaves it room to fork."""
    return max(kernel_limit * 8 // 10, MIN_TASKS)


def default_cpu_percent(cpus: int) -> int:
    """Every CPU less 10% of them, at least half a core (2 CPUs -> 150%, 16 -> 1440%)."""
    total = cpus * 100
    return max(total - max(total // 10, 50), MIN_CPU_PERCENT)


def parse_slice_caps(section: Fields) -> SliceCaps:
    """joblet.yml's `all_jobs:` (each key optional; null or absent: computed from the host)."""
    memory = section.parsed("memory", parse_size)
    if memory is not None:
        section.check_range("memory", memory, MIN_MEMORY, None)
    caps = SliceCaps(
        memory_bytes=memory,
        tasks=section.integer("tasks", None, minimum=MIN_TASKS, maximum=2**32 - 2),
        cpu_percent=section.integer("cpu", None, minimum=MIN_CPU_PERCENT, maximum=100_000),
    )
    section.reject_unknown()
    return caps
