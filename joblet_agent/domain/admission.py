"""When jobs start: the agent's caps, each owner's quota, and the order of the queue. Pure.

A job that does not fit now waits QUEUED. The queue's order is one number per job, fixed when it
joins: the time it joined, less `priority_step` per level of priority (0-9, higher first). So jobs
of one priority run first come, first served; a higher priority is a head start, not a pass to
the front for ever: a job that has waited longer than the head start of every priority above it
can be overtaken by no job that comes later, so none waits for ever (starvation-free).

A pass over the queue takes jobs in that order while they fit. A job held back by the agent's
caps (running jobs, reserved memory or CPU) stops the pass: a small job never jumps a big one
that waits for room, or the big one could wait for ever. A job held back by its own owner's cap
(or by the run of its schedule still going) is passed over and keeps its place: it waits for its
owner's jobs, not for anyone else's, and must not keep other owners' jobs waiting.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from joblet_agent.domain.capacity import AdmissionPolicy, Quotas
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord, Limits
from joblet_agent.errors import ErrorCode, JobletError

DEFAULT_PRIORITY = 5
MOST_PRIORITY = 9
PRIORITY_RULE = f"a whole number from 0 to {MOST_PRIORITY} (higher runs first; default 5)"


@dataclass(frozen=True, slots=True)
class Capacity:
    """The caps of one agent on one host, in base units."""

    max_running: int
    memory_bytes: int | None  # the most the running jobs' memory limits may add up to
    cpu_percent: int | None  # the same for CPU limits (percent of one core)
    quotas: Quotas

    @classmethod
    def of(
        cls, admission: AdmissionPolicy, pool_size: int, quotas: Quotas, host: HostInfo
    ) -> Capacity:
        memory = (
            None
            if admission.memory_share is None
            else int(host.memory_bytes * admission.memory_share)
        )
        cpu = (
            None if admission.cpu_share is None else int(len(host.cpus) * 100 * admission.cpu_share)
        )
        return cls(
            max_running=min(admission.max_running or pool_size, pool_size),
            memory_bytes=memory,
            cpu_percent=cpu,
            quotas=quotas,
        )


def parse_priority(value: object) -> int:
    """A request's `priority`; rnx's names low, normal and high are 2, 5 and 8."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MOST_PRIORITY:
        raise ValueError(PRIORITY_RULE)
    return value


def queue_key(queued_at: datetime, priority: int, step_sec: float) -> float:
    """The job's place in the queue: smaller is sooner (see the module's docstring)."""
    return queued_at.timestamp() - priority * step_sec


def cpu_reserved(limits: Limits) -> int:
    """The CPU a job may use, percent of one core: its quota, or its pinned cores; 0 if neither."""
    pinned = len(limits.cpu_cores) * 100 if limits.cpu_cores else None
    given = [v for v in (limits.cpu_percent, pinned) if v is not None]
    return min(given) if given else 0


@dataclass(slots=True)
class Usage:
    """What the admitted jobs hold: a count, reserved memory and CPU, per owner too."""

    jobs: int = 0
    memory_bytes: int = 0
    cpu_percent: int = 0
    by_owner: Counter[str] = field(default_factory=Counter)
    schedules: set[str] = field(default_factory=set)  # schedules with a run admitted

    @classmethod
    def of(cls, admitted: Iterable[JobRecord]) -> Usage:
        usage = cls()
        for record in admitted:
            usage.add(record)
        return usage

    def add(self, record: JobRecord) -> None:
        self.jobs += 1
        self.memory_bytes += record.spec.limits.memory_bytes or 0
        self.cpu_percent += cpu_reserved(record.spec.limits)
        self.by_owner[record.owner] += 1
        if record.schedule is not None:
            self.schedules.add(record.schedule)


def agent_room(record: JobRecord, usage: Usage, capacity: Capacity) -> str | None:
    """Why the agent has no room for the job now (its caps), or None if it has."""
    if usage.jobs >= capacity.max_running:
        return f"{usage.jobs} jobs run, the most admission.max_running allows"
    memory = record.spec.limits.memory_bytes or 0
    if capacity.memory_bytes is not None and usage.memory_bytes + memory > capacity.memory_bytes:
        return "the running jobs' memory limits leave too little of admission.memory_share"
    cpu = cpu_reserved(record.spec.limits)
    if capacity.cpu_percent is not None and usage.cpu_percent + cpu > capacity.cpu_percent:
        return "the running jobs' CPU limits leave too little of admission.cpu_share"
    return None


def owner_room(
    record: JobRecord, usage: Usage, capacity: Capacity, *, serial_schedules: frozenset[str]
) -> str | None:
    """Why the job's owner (or its schedule) has no room for it now, or None."""
    most = capacity.quotas.of(record.owner).max_running
    if most is not None and usage.by_owner[record.owner] >= most:
        return f"{usage.by_owner[record.owner]} jobs of {record.owner} run, its quota's max_running"
    if record.schedule in serial_schedules and record.schedule in usage.schedules:
        return "the previous run of its schedule has not ended (overlap: queue)"
    return None


def next_admissions(
    queue: Iterable[JobRecord],
    admitted: Iterable[JobRecord],
    capacity: Capacity,
    *,
    serial_schedules: frozenset[str] = frozenset(),
) -> list[JobRecord]:
    """The queued jobs to start now, in the queue's order (`queue` is in it); `admitted` are the
    jobs that hold room now (JobRecord.holds_capacity). `serial_schedules`: schedules whose runs
    wait for the previous one to end (overlap: queue)."""
    usage = Usage.of(admitted)
    chosen: list[JobRecord] = []
    for record in queue:
        if owner_room(record, usage, capacity, serial_schedules=serial_schedules) is not None:
            continue  # keeps its place; waits for its owner's (its schedule's) jobs only
        if agent_room(record, usage, capacity) is not None:
            break  # FIFO within priority: nothing behind it starts before it
        usage.add(record)
        chosen.append(record)
    return chosen


def default_within(limits: Limits, owner: str, capacity: Capacity) -> Limits:
    """A job that asked for no memory limit got jobs.default_memory; where its owner's quota or
    the agent's reservable share is smaller, it gets that instead (never refused for a limit it
    did not ask for)."""
    memory = limits.memory_bytes
    for most in (capacity.quotas.of(owner).memory_bytes, capacity.memory_bytes):
        if memory is not None and most is not None and memory > most:
            memory = most
    return (
        limits
        if memory == limits.memory_bytes
        else dataclasses.replace(limits, memory_bytes=memory)
    )


def check_ever_fits(limits: Limits, owner: str, capacity: Capacity) -> None:
    """Refuse at submit a job that could never start: its own limits above its owner's quota or
    above what the agent may reserve for all jobs together. It would wait QUEUED for ever."""
    quota = capacity.quotas.of(owner)
    memory, cpu = limits.memory_bytes, limits.cpu_percent
    for key, value, most, source in (
        ("memory_bytes", memory, quota.memory_bytes, f"the quota of {owner} (memory_max)"),
        ("cpu_percent", cpu, quota.cpu_percent, f"the quota of {owner} (cpu_quota)"),
        ("memory_bytes", memory, capacity.memory_bytes, "admission.memory_share of the host"),
        ("cpu_percent", cpu, capacity.cpu_percent, "admission.cpu_share of the host"),
    ):
        if value is not None and most is not None and value > most:
            raise JobletError(
                ErrorCode.INVALID,
                f"limits.{key}: {value} is not valid; at most {most}, {source}: the job could "
                "never start",
                hint="ask for less, or for a larger quota in joblet.yml",
            )
