"""The domain: what a job asks for (JobSpec) and what became of it (JobRecord)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from joblet_agent.domain.network import EgressRule, Endpoint
from joblet_agent.domain.volume import VolumeMount

# The host's base system, read-only: programs and their libraries, and the few /etc files they
# read. /etc/passwd, group and nsswitch.conf come from the job root itself (job_root.py).
BASE_READ_ONLY = ("/usr", "/etc/ld.so.cache", "/etc/ssl", "/etc/alternatives", "/etc/localtime")
# What an admin may loosen for one job, each recorded on it (spec.relax). JIT compilers (Java,
# Node) need writable-and-executable memory; everything else stays as it is.
RELAXATIONS = {"wx-memory": "MemoryDenyWriteExecute=no: allow writable and executable memory"}


class JobState(StrEnum):
    SCHEDULED = "SCHEDULED"  # waiting for its start time (scheduled_for), or its unit starting
    QUEUED = "QUEUED"  # waiting for room to run (domain/admission.py)
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # running, frozen (rnx job pause): its cgroup's processes get no CPU
    COMPLETED = "COMPLETED"  # exit 0
    FAILED = "FAILED"  # non-zero exit, signal, OOM kill, or failed to start
    STOPPED = "STOPPED"  # by request
    TIMEOUT = "TIMEOUT"  # RuntimeMaxSec hit
    CANCELED = "CANCELED"  # scheduled or queued, then canceled before it ran

    @property
    def is_terminal(self) -> bool:
        return self not in (JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)


# Exit code recorded for a job killed by its timeout, like timeout(1).
TIMEOUT_EXIT_CODE = 124


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits, already validated and in base units."""

    cpu_percent: int | None = None  # percent of one core: 100 = one core
    memory_bytes: int | None = None
    io_read_bps: int | None = None
    io_write_bps: int | None = None
    cpu_cores: tuple[int, ...] | None = None  # sorted, unique CPU numbers
    max_tasks: int = 512
    timeout_sec: float | None = None
    work_bytes: int | None = None  # size of its /work filesystem
    # ended when no exec, attach or file call touched it for this long (services/job/lifetime.py)
    idle_timeout_sec: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.cpu_cores is not None:
            data["cpu_cores"] = list(self.cpu_cores)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Limits:
        cores = data.get("cpu_cores")
        return cls(**{**data, "cpu_cores": tuple(cores) if cores is not None else None})


def _frozen_map(data: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated request to run one command."""

    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=_frozen_map)
    secret_env: Mapping[str, str] = field(default_factory=_frozen_map)
    workdir: str | None = None  # relative to the job's work directory
    relax: tuple[str, ...] = ()  # isolation relaxations asked for (units/sandbox.py RELAXATIONS)
    name: str | None = None
    limits: Limits = field(default_factory=Limits)
    upload: str | None = None  # the id of the upload whose files became its /work
    volumes: tuple[VolumeMount, ...] = ()
    network: str = "none"  # a mode (networks.NetworkMode) or a network's name
    allow_egress: tuple[EgressRule, ...] = ()  # resolved at submit time
    runtime: str | None = None  # canonical reference: java-17, name@1.0.2 (runtimes/reference.py)
    tty: bool = False  # its command gets a terminal an attach relays (rnx job run -t)
    stdin: bool = False  # its command's stdin is fed by an attach (rnx job run -i)

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.command, *self.args)

    def to_dict(self, *, with_secrets: bool, inspect: bool = True) -> dict[str, Any]:
        """Secrets are stored (the job needs them after an agent restart) but never shown.
        Without `inspect` (another owner's job, for a role below maintainer: domain/rbac.py
        JOB_INSPECT), arguments and environment values are shown as *** too."""
        return {
            "command": self.command,
            "args": list(self.args) if inspect else ["***"] * len(self.args),
            "env": dict(self.env) if inspect else dict.fromkeys(self.env, "***"),
            "secret_env": dict(self.secret_env)
            if with_secrets
            else dict.fromkeys(self.secret_env, "***"),
            "workdir": self.workdir,
            "relax": list(self.relax),
            "name": self.name,
            "limits": self.limits.to_dict(),
            "upload": self.upload,
            "volumes": [v.to_dict() for v in self.volumes],
            "network": self.network,
            "allow_egress": [rule.to_dict() for rule in self.allow_egress],
            "runtime": self.runtime,
            "tty": self.tty,
            "stdin": self.stdin,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobSpec:
        return cls(
            command=data["command"],
            args=tuple(data["args"]),
            env=_frozen_map(data["env"]),
            secret_env=_frozen_map(data["secret_env"]),
            workdir=data["workdir"],
            relax=tuple(data.get("relax", ())),
            name=data["name"],
            limits=Limits.from_dict(data["limits"]),
            upload=data.get("upload"),
            volumes=tuple(
                VolumeMount(name=v["name"], read_only=v["read_only"])
                for v in data.get("volumes", ())
            ),
            network=data.get("network", "none"),
            allow_egress=tuple(EgressRule.from_dict(r) for r in data.get("allow_egress", ())),
            runtime=data.get("runtime"),
            tty=data.get("tty", False),
            stdin=data.get("stdin", False),
        )


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as the agent remembers it. Replaced, never mutated, on each transition."""

    id: str
    spec: JobSpec
    state: JobState
    owner: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    result: str | None = None  # systemd's Result of the unit, e.g. "oom-kill", "timeout"
    reason: str | None = None  # why it failed, for people
    stop_requested: bool = False
    warnings: tuple[str, ...] = ()
    user: str | None = None  # the pool user it runs as (adapters/userdb.py)
    endpoint: Endpoint | None = None  # its address and hostname on a network (networks.py)
    # When its files (its /work image, its directory) were removed, jobs.work_retention after
    # its end; the record stays until deleted.
    files_reclaimed_at: datetime | None = None
    # When it starts (domain/admission.py, domain/schedule.py): its place in the queue comes
    # from when it joined it and its priority (0-9, higher first); scheduled_for is the start
    # time it was given (one-shot) or its schedule's firing; schedule, the schedule that made it.
    priority: int = 5
    queued_at: datetime | None = None
    scheduled_for: datetime | None = None
    schedule: str | None = None
    # Its owner's role used everyone's volumes and networks when it was submitted (maintainer,
    # admin): its start asks the same of them (domain/sharing.py), however long it waited.
    # Stored, not shown.
    manages_all: bool = False

    @property
    def unit(self) -> str:
        return unit_name(self.id)

    @property
    def waiting_for_time(self) -> bool:
        """SCHEDULED for a time that has not come yet: it joins the queue when it comes."""
        return (
            self.state is JobState.SCHEDULED
            and self.scheduled_for is not None
            and self.queued_at is None
        )

    @property
    def holds_capacity(self) -> bool:
        """Admitted and not ended: its unit is starting or runs (what the agent's caps count)."""
        return not (
            self.state.is_terminal or self.state is JobState.QUEUED or self.waiting_for_time
        )

    def evolve(self, **changes: Any) -> JobRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(
        self, *, with_secrets: bool = False, inspect: bool = True, stored: bool = False
    ) -> dict[str, Any]:
        """The API's form; `stored`: the job store's, with what is kept and never shown."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        data: dict[str, Any] = {
            "id": self.id,
            "unit": self.unit,
            "spec": self.spec.to_dict(with_secrets=with_secrets, inspect=inspect),
            "state": str(self.state),
            "owner": self.owner,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "result": self.result,
            "reason": self.reason,
            "stop_requested": self.stop_requested,
            "warnings": list(self.warnings),
            "user": self.user,
            "endpoint": self.endpoint.to_dict() if self.endpoint else None,
            "redacted": not inspect,
            "files_reclaimed_at": iso(self.files_reclaimed_at),
            "priority": self.priority,
            "queued_at": iso(self.queued_at),
            "scheduled_for": iso(self.scheduled_for),
            "schedule": self.schedule,
        }
        if stored:
            data["manages_all"] = self.manages_all
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        def moment(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        created = moment(data["created_at"])
        assert created is not None
        return cls(
            id=data["id"],
            spec=JobSpec.from_dict(data["spec"]),
            state=JobState(data["state"]),
            owner=data["owner"],
            created_at=created,
            started_at=moment(data["started_at"]),
            ended_at=moment(data["ended_at"]),
            exit_code=data["exit_code"],
            signal=data["signal"],
            result=data["result"],
            reason=data["reason"],
            stop_requested=data["stop_requested"],
            warnings=tuple(data["warnings"]),
            user=data.get("user"),
            endpoint=Endpoint.from_dict(data["endpoint"]) if data.get("endpoint") else None,
            files_reclaimed_at=moment(data.get("files_reclaimed_at")),
            priority=data.get("priority", 5),
            queued_at=moment(data.get("queued_at")),
            scheduled_for=moment(data.get("scheduled_for")),
            schedule=data.get("schedule"),
            manages_all=data.get("manages_all", False),
        )


UNIT_PREFIX = "joblet-job-"


def unit_name(job_id: str) -> str:
    return f"{UNIT_PREFIX}{job_id}.service"


def job_id_of_unit(unit: str) -> str | None:
    if unit.startswith(UNIT_PREFIX) and unit.endswith(".service"):
        return unit[len(UNIT_PREFIX) : -len(".service")]
    return None
