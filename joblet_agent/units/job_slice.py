"""joblet.slice's caps (domain/job_slice.py) -> the properties the agent sets on the slice. Pure."""

from __future__ import annotations

from joblet_agent.domain.job_slice import SliceCaps
from joblet_agent.units.properties import Property, prop

USEC_PER_SEC = 1_000_000


def slice_properties(caps: SliceCaps) -> list[Property]:
    """MemoryMax, TasksMax and the CPU quota of the slice every job runs in; accounting on, so
    `systemctl status joblet.slice` shows what all jobs use together. A cap that is None is left
    as it is (the slice has none: systemd's infinity)."""
    props = [
        prop("MemoryAccounting", True),
        prop("TasksAccounting", True),
        prop("CPUAccounting", True),
    ]
    if caps.memory_bytes is not None:
        props.append(prop("MemoryMax", caps.memory_bytes))
    if caps.tasks is not None:
        props.append(prop("TasksMax", caps.tasks))
    if caps.cpu_percent is not None:
        props.append(prop("CPUQuotaPerSecUSec", caps.cpu_percent * USEC_PER_SEC // 100))
    return props
