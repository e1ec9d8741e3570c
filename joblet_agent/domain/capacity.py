"""The caps of joblet.yml on when jobs start: `admission:` (the agent's, all owners together)
and `quotas:` (each owner's, on their slice). Parsed here; used by domain/admission.py, and by
units/owner.py for the owners' slices. Pure."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from joblet_agent.domain.fields import Fields
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.owner import CERT, parse_owner
from joblet_agent.domain.quantities import parse_duration, parse_size
from joblet_agent.errors import ErrorCode, JobletError

MAX_CPU_WEIGHT = 10_000  # systemd's CPUWeight= range is 1-10000
MAX_OWNER_NAME_CHARS = 256
MIN_MEMORY = 4 * 1024 * 1024  # jobspec.MIN_MEMORY: below it nothing starts


@dataclass(frozen=True, slots=True)
class OwnerQuota:
    """What one owner's jobs may use together: the properties of their slice
    (joblet-owner-<name>.slice, units/owner.py), enforced by the kernel over all of them, and
    how many of them run at once. None: no limit of its own."""

    memory_bytes: int | None = None  # MemoryMax
    cpu_percent: int | None = None  # CPUQuota, percent of one core (100 = one core)
    max_tasks: int | None = None  # TasksMax
    cpu_weight: int = 100  # CPUWeight: owners' shares of the CPU when it is contended
    max_running: int | None = None  # the owner's jobs running at once; more wait QUEUED

    def to_dict(self) -> dict[str, int | None]:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_percent": self.cpu_percent,
            "max_tasks": self.max_tasks,
            "cpu_weight": self.cpu_weight,
            "max_running": self.max_running,
        }


@dataclass(frozen=True, slots=True)
class Quotas:
    """quotas: in joblet.yml: `default` for every owner without an entry in `owners`, whose
    entries change only the keys they give."""

    default: OwnerQuota = OwnerQuota()
    owners: Mapping[str, OwnerQuota] = field(default_factory=lambda: MappingProxyType({}))
    # Each owner's key as joblet.yml wrote it (`alice` for cert:alice), for errors that name it.
    written: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, owner: str) -> OwnerQuota:
        return self.owners.get(owner, self.default)


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    """admission: in joblet.yml: the agent's caps on jobs running at once."""

    max_running: int | None = None  # None: jobs.max_running (the pool of job users)
    # The running jobs' memory (CPU) limits together may reserve at most this share of the
    # host's memory (CPUs); None: not counted. A job without such a limit reserves none.
    memory_share: float | None = None
    cpu_share: float | None = None
    max_queued: int = 10_000  # QUEUED jobs at once, all owners; more are refused
    max_queued_per_owner: int = 1_000
    priority_step_sec: float = 60.0  # the head start in the queue of one level of priority


def _share(value: object) -> float:
    """'80%' or 80 -> 0.8: a share of the host, more than 0% and at most 100%."""
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    try:
        if isinstance(text, bool):
            raise TypeError
        percent = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("a share of the host: a percentage like 80% (at most 100%)") from None
    if not 0 < percent <= 100:  # NaN too
        raise ValueError("a share of the host is more than 0% and at most 100%: the host's own")
    return percent / 100


def parse_admission(section: Fields, pool_size: int) -> AdmissionPolicy:
    base = AdmissionPolicy()
    # At most the pool of job users: each running job has one of its own (domain/user.py).
    most = section.integer("max_running", None, minimum=1, maximum=pool_size)
    queued = section.integer("max_queued", base.max_queued, minimum=0, maximum=1_000_000)
    per_owner = section.integer("max_queued_per_owner", base.max_queued_per_owner, minimum=0)
    assert queued is not None and per_owner is not None
    if per_owner > queued:
        raise section.error("max_queued_per_owner", per_owner, f"at most max_queued ({queued})")
    step = section.parsed("priority_step", parse_duration, base.priority_step_sec)
    assert step is not None
    section.check_range("priority_step", step, 0, 7 * 86400)
    policy = AdmissionPolicy(
        max_running=most,
        memory_share=section.parsed("memory_share", _share),
        cpu_share=section.parsed("cpu_share", _share),
        max_queued=queued,
        max_queued_per_owner=per_owner,
        priority_step_sec=step,
    )
    section.reject_unknown()
    return policy


def _parse_quota(section: Fields, base: OwnerQuota) -> OwnerQuota:
    """An entry changes the keys it gives (null: no limit) and keeps `base`'s others."""

    def given(key: str, read: Callable[[], int | None], default: int | None) -> int | None:
        return read() if section.present(key) else default

    quota = OwnerQuota(
        memory_bytes=given(
            "memory_max", lambda: section.parsed("memory_max", parse_size), base.memory_bytes
        ),
        cpu_percent=given(
            "cpu_quota", lambda: section.integer("cpu_quota", minimum=1), base.cpu_percent
        ),
        max_tasks=given(
            "tasks_max", lambda: section.integer("tasks_max", minimum=2), base.max_tasks
        ),
        cpu_weight=section.integer("cpu_weight", base.cpu_weight, minimum=1, maximum=MAX_CPU_WEIGHT)
        or base.cpu_weight,
        max_running=given(
            "max_running", lambda: section.integer("max_running", minimum=1), base.max_running
        ),
    )
    if quota.memory_bytes is not None:
        # Below this not even one job's shell starts (jobspec.MIN_MEMORY).
        section.check_range("memory_max", quota.memory_bytes, MIN_MEMORY, None)
    section.reject_unknown()
    return quota


def parse_quotas(section: Fields) -> Quotas:
    default = _parse_quota(section.section("default"), OwnerQuota())
    entries = section.section("owners")
    owners: dict[str, OwnerQuota] = {}
    written: dict[str, str] = {}
    raw = section.raw("owners") or {}
    for name in list(raw) if isinstance(raw, Mapping) else []:
        if not isinstance(name, str) or not name or len(name) > MAX_OWNER_NAME_CHARS:
            raise entries.error(str(name)[:80], name, "an owner's name, 1-256 characters")
        # cert:NAME or unix:NAME; a bare NAME is a certificate's (a local user is always
        # unix:NAME), so a certificate named like a local account never gets that account's.
        owner = parse_owner(f"quotas.owners.{name}", name, namespace=CERT)
        owners[owner] = _parse_quota(entries.section(name), default)
        written[owner] = name
    entries.reject_unknown()
    section.reject_unknown()
    return Quotas(
        default=default, owners=MappingProxyType(owners), written=MappingProxyType(written)
    )


def check_against_host(admission: AdmissionPolicy, quotas: Quotas, host: HostInfo) -> None:
    """Quotas the host could never give are a mistake in joblet.yml: refused at start."""
    cpus = len(host.cpus) * 100
    entries = [("quotas.default", quotas.default)]
    entries += [
        (f"quotas.owners.{quotas.written.get(owner, owner)}", quota)
        for owner, quota in quotas.owners.items()
    ]
    for where, quota in entries:
        if quota.memory_bytes is not None and quota.memory_bytes > host.memory_bytes:
            raise JobletError(
                ErrorCode.CONFIG,
                f"joblet.yml: {where}.memory_max: {quota.memory_bytes} is not valid; at most "
                f"this host's memory ({host.memory_bytes} bytes)",
            )
        if quota.cpu_percent is not None and quota.cpu_percent > cpus:
            raise JobletError(
                ErrorCode.CONFIG,
                f"joblet.yml: {where}.cpu_quota: {quota.cpu_percent} is not valid; at most "
                f"{cpus}, every CPU of this host ({len(host.cpus)} CPUs, 100 each)",
            )
