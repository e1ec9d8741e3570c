"""The agent's health and its host (docs/openapi.yaml: Health)."""

from __future__ import annotations

from dataclasses import dataclass

from rnx.client.fields import Fields, Model


@dataclass(frozen=True, slots=True)
class Host(Model):
    cpus: int
    memory_bytes: int
    systemd_version: int
    cgroup_mode: str  # unified, hybrid, legacy or none
    controllers: tuple[str, ...]  # the cgroup controllers systemd drives for jobs here
    io_device: str | None  # MAJ:MIN behind the jobs' directory; None on tmpfs and the like

    @classmethod
    def read(cls, fields: Fields) -> Host:
        return cls(
            cpus=fields.whole("cpus"),
            memory_bytes=fields.whole("memory_bytes"),
            systemd_version=fields.whole("systemd_version"),
            cgroup_mode=fields.text("cgroup_mode"),
            controllers=fields.texts("controllers"),
            io_device=fields.opt_text("io_device"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class LimitMinimums(Model):
    """The smallest value of each limit a job may ask for."""

    cpu_percent: int
    memory_bytes: int
    io_bps: int  # io_read_bps and io_write_bps
    max_tasks: int
    work_bytes: int

    @classmethod
    def read(cls, fields: Fields) -> LimitMinimums:
        return cls(
            cpu_percent=fields.whole("cpu_percent"),
            memory_bytes=fields.whole("memory_bytes"),
            io_bps=fields.whole("io_bps"),
            max_tasks=fields.whole("max_tasks"),
            work_bytes=fields.whole("work_bytes"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class HealthLimits(Model):
    minimums: LimitMinimums

    @classmethod
    def read(cls, fields: Fields) -> HealthLimits:
        return cls(minimums=LimitMinimums.read(fields.obj("minimums")), raw=fields.data)


@dataclass(frozen=True, slots=True)
class Health(Model):
    status: str  # "ok"
    version: str  # the agent's
    host: Host
    unenforceable_limits: tuple[str, ...]  # controllers this host lacks: cpu, memory, io, pids
    limits: HealthLimits

    @classmethod
    def read(cls, fields: Fields) -> Health:
        return cls(
            status=fields.text("status"),
            version=fields.text("version"),
            host=Host.read(fields.obj("host")),
            unenforceable_limits=fields.texts("unenforceable_limits"),
            limits=HealthLimits.read(fields.obj("limits")),
            raw=fields.data,
        )
