"""Jobs as the agent answers about them (docs/openapi.yaml: Job, JobSpec, AppliedLimits, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rnx.client.fields import Fields, Model, bad_answer


class JobState(StrEnum):
    SCHEDULED = "SCHEDULED"  # waiting for its start time, or its unit starting
    QUEUED = "QUEUED"  # waiting for room to run (the agent's caps, its owner's quota)
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"  # frozen (Client.pause); Client.resume thaws it
    COMPLETED = "COMPLETED"  # exit 0
    FAILED = "FAILED"  # non-zero exit, signal, OOM kill, or failed to start
    STOPPED = "STOPPED"  # by request
    TIMEOUT = "TIMEOUT"  # timeout_sec hit (exit code 124)
    CANCELED = "CANCELED"  # canceled while SCHEDULED or QUEUED

    @property
    def ended(self) -> bool:
        return self not in (JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING, JobState.PAUSED)

    @classmethod
    def read(cls, fields: Fields, key: str = "state") -> JobState:
        text = fields.text(key)
        try:
            return cls(text)
        except ValueError:
            raise bad_answer(fields.path(key), "a job state", text) from None


@dataclass(frozen=True, slots=True)
class Limits(Model):
    """The limits a job runs with, in base units (bytes, seconds, CPU numbers); None is none."""

    cpu_percent: int | None  # of one core: 100 = one core
    memory_bytes: int | None
    io_read_bps: int | None
    io_write_bps: int | None
    cpu_cores: tuple[int, ...] | None
    max_tasks: int
    timeout_sec: float | None
    work_bytes: int | None
    idle_timeout_sec: float | None = None

    @classmethod
    def read(cls, fields: Fields) -> Limits:
        return cls(
            cpu_percent=fields.opt_whole("cpu_percent"),
            memory_bytes=fields.opt_whole("memory_bytes"),
            io_read_bps=fields.opt_whole("io_read_bps"),
            io_write_bps=fields.opt_whole("io_write_bps"),
            cpu_cores=fields.opt_wholes("cpu_cores"),
            max_tasks=fields.whole("max_tasks"),
            timeout_sec=fields.opt_number("timeout_sec"),
            work_bytes=fields.opt_whole("work_bytes", None),
            idle_timeout_sec=fields.opt_number("idle_timeout_sec", None),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class VolumeMount(Model):
    name: str
    read_only: bool

    @classmethod
    def read(cls, fields: Fields) -> VolumeMount:
        return cls(
            name=fields.text("name"), read_only=fields.flag("read_only", False), raw=fields.data
        )


@dataclass(frozen=True, slots=True)
class EgressRule(Model):
    """One --allow-egress entry: as asked, and the addresses it stood for at submit."""

    target: str
    host: str
    port: int | None
    addresses: tuple[str, ...]

    @classmethod
    def read(cls, fields: Fields) -> EgressRule:
        return cls(
            target=fields.text("target"),
            host=fields.text("host"),
            port=fields.opt_whole("port"),
            addresses=fields.texts("addresses"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Endpoint(Model):
    """A job's place on a network: its address, its hostname there, the host end of its link."""

    network: str
    address: str
    hostname: str
    link: str

    @classmethod
    def read(cls, fields: Fields) -> Endpoint:
        return cls(
            network=fields.text("network"),
            address=fields.text("address"),
            hostname=fields.text("hostname"),
            link=fields.text("link"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class JobSpec(Model):
    """The request as the job runs it. secret_env maps the secret names to "***"."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    secret_env: Mapping[str, str]
    workdir: str | None
    name: str | None
    limits: Limits
    relax: tuple[str, ...] = ()
    upload: str | None = None
    volumes: tuple[VolumeMount, ...] = ()
    network: str = "none"  # none, isolated, host or a network's name
    allow_egress: tuple[EgressRule, ...] = ()
    runtime: str | None = None  # NAME@RELEASE
    tty: bool = False  # a terminal an attach relays (run(tty=True), Client.attach)
    stdin: bool = False  # stdin an attach feeds

    @property
    def argv(self) -> tuple[str, ...]:
        return (self.command, *self.args)

    @classmethod
    def read(cls, fields: Fields) -> JobSpec:
        # relax, upload, volumes, network, allow_egress and runtime came after the first agents.
        return cls(
            command=fields.text("command"),
            args=fields.texts("args"),
            env=fields.text_map("env"),
            secret_env=fields.text_map("secret_env"),
            workdir=fields.opt_text("workdir"),
            name=fields.opt_text("name"),
            limits=Limits.read(fields.obj("limits")),
            relax=fields.texts("relax", ()),
            upload=fields.opt_text("upload", None),
            volumes=tuple(VolumeMount.read(v) for v in fields.objs("volumes", [])),
            network=fields.text("network", "none"),
            allow_egress=tuple(EgressRule.read(r) for r in fields.objs("allow_egress", [])),
            runtime=fields.opt_text("runtime", None),
            tty=fields.flag("tty", False),
            stdin=fields.flag("stdin", False),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Job(Model):
    """A job's record."""

    id: str
    unit: str  # joblet-job-<id>.service
    spec: JobSpec
    state: JobState
    owner: str  # cert:NAME (a certificate's) or unix:NAME (a local user's)
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    exit_code: int | None  # 128+N when killed by signal N; 124 on timeout
    signal: str | None  # e.g. SIGKILL
    result: str | None  # systemd's Result of the unit, e.g. oom-kill
    reason: str | None  # why it failed or ended, for people
    stop_requested: bool
    warnings: tuple[str, ...]
    user: str | None = None  # the pool user it runs as
    endpoint: Endpoint | None = None  # on a network (isolated or named)
    redacted: bool = False  # another owner's: spec.args and spec.env's values are ***
    files_reclaimed_at: datetime | None = None  # its /work and files removed (jobs.work_retention)
    priority: int = 5  # in the admission queue: 0-9, higher first
    queued_at: datetime | None = None  # when it joined the queue
    queue_position: int | None = None  # while QUEUED: 1 starts next
    scheduled_for: datetime | None = None  # its start time (--schedule), or its schedule's firing
    schedule: str | None = None  # the id of the schedule that made it

    @classmethod
    def read(cls, fields: Fields) -> Job:
        # priority and after came with the admission queue and schedules.
        endpoint = fields.opt_obj("endpoint", None)
        return cls(
            id=fields.text("id"),
            unit=fields.text("unit"),
            spec=JobSpec.read(fields.obj("spec")),
            state=JobState.read(fields),
            owner=fields.text("owner"),
            created_at=fields.moment("created_at"),
            started_at=fields.opt_moment("started_at"),
            ended_at=fields.opt_moment("ended_at"),
            exit_code=fields.opt_whole("exit_code"),
            signal=fields.opt_text("signal"),
            result=fields.opt_text("result"),
            reason=fields.opt_text("reason"),
            stop_requested=fields.flag("stop_requested"),
            warnings=fields.texts("warnings"),
            user=fields.opt_text("user", None),
            endpoint=None if endpoint is None else Endpoint.read(endpoint),
            redacted=fields.flag("redacted", False),
            files_reclaimed_at=fields.opt_moment("files_reclaimed_at", None),
            priority=fields.whole("priority", 5),
            queued_at=fields.opt_moment("queued_at", None),
            queue_position=fields.opt_whole("queue_position", None),
            scheduled_for=fields.opt_moment("scheduled_for", None),
            schedule=fields.opt_text("schedule", None),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class JobEnd(Model):
    """How a job ended: the `end` event of its log stream, always the stream's last."""

    id: str
    state: JobState
    exit_code: int | None
    signal: str | None
    reason: str | None

    @classmethod
    def read(cls, fields: Fields) -> JobEnd:
        return cls(
            id=fields.text("id"),
            state=JobState.read(fields),
            exit_code=fields.opt_whole("exit_code"),
            signal=fields.opt_text("signal"),
            reason=fields.opt_text("reason"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class UnitMetrics(Model):
    """systemd's accounting of a job's unit; all None once the unit is gone (the job ended),
    or where this systemd does not have or account a property."""

    cpu_usage_nsec: int | None = None
    memory_current: int | None = None
    memory_peak: int | None = None  # systemd 253 and later
    tasks_current: int | None = None
    io_read_bytes: int | None = None
    io_write_bytes: int | None = None
    active_state: str | None = None
    sub_state: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> UnitMetrics:
        return cls(
            cpu_usage_nsec=fields.opt_whole("CPUUsageNSec", None),
            memory_current=fields.opt_whole("MemoryCurrent", None),
            memory_peak=fields.opt_whole("MemoryPeak", None),
            tasks_current=fields.opt_whole("TasksCurrent", None),
            io_read_bytes=fields.opt_whole("IOReadBytes", None),
            io_write_bytes=fields.opt_whole("IOWriteBytes", None),
            active_state=fields.opt_text("ActiveState", None),
            sub_state=fields.opt_text("SubState", None),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class Metrics(Model):
    id: str
    state: JobState
    unit: UnitMetrics

    @classmethod
    def read(cls, fields: Fields) -> Metrics:
        return cls(
            id=fields.text("id"),
            state=JobState.read(fields),
            unit=UnitMetrics.read(fields.obj("unit")),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class JobDeleted(Model):
    deleted: str  # the full id of the deleted job

    @classmethod
    def read(cls, fields: Fields) -> JobDeleted:
        return cls(deleted=fields.text("deleted"), raw=fields.data)


@dataclass(frozen=True, slots=True)
class JobsDeleted(Model):
    deleted: int  # ended jobs deleted
    skipped_running: int  # jobs left alone because they have not ended

    @classmethod
    def read(cls, fields: Fields) -> JobsDeleted:
        return cls(
            deleted=fields.whole("deleted"),
            skipped_running=fields.whole("skipped_running"),
            raw=fields.data,
        )
