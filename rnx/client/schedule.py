"""Recurring schedules as the agent answers about them (docs/openapi.yaml: Schedule,
ScheduleDeleted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rnx.client.fields import Fields, Model
from rnx.client.job import JobSpec, JobState


@dataclass(frozen=True, slots=True)
class ScheduleSpec(Model):
    calendar: str  # the calendar expression as given
    normalized: str  # systemd's normal form of it
    job: JobSpec  # what each run is
    priority: int
    overlap: str  # skip, queue or parallel
    catch_up: bool  # a firing missed while no agent ran runs once at its start

    @classmethod
    def read(cls, fields: Fields) -> ScheduleSpec:
        return cls(
            calendar=fields.text("calendar"),
            normalized=fields.text("normalized"),
            job=JobSpec.read(fields.obj("job")),
            priority=fields.whole("priority"),
            overlap=fields.text("overlap"),
            catch_up=fields.flag("catch_up"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class LastRun(Model):
    id: str
    state: JobState

    @classmethod
    def read(cls, fields: Fields) -> LastRun:
        return cls(id=fields.text("id"), state=JobState.read(fields), raw=fields.data)


@dataclass(frozen=True, slots=True)
class Schedule(Model):
    """A recurring schedule: its timer's firings each make a job (a run)."""

    id: str
    name: str | None
    owner: str
    spec: ScheduleSpec
    state: str  # ACTIVE or PAUSED
    timer: str  # joblet-sched-<id>.timer
    created_at: datetime
    last_fired_at: datetime | None
    runs: int  # jobs its firings made
    skipped: int  # firings that made none (overlap, or a full queue)
    warnings: tuple[str, ...]
    next_elapse: datetime | None  # None while paused
    last_run: LastRun | None

    @classmethod
    def read(cls, fields: Fields) -> Schedule:
        last = fields.opt_obj("last_run", None)
        return cls(
            id=fields.text("id"),
            name=fields.opt_text("name"),
            owner=fields.text("owner"),
            spec=ScheduleSpec.read(fields.obj("spec")),
            state=fields.text("state"),
            timer=fields.text("timer"),
            created_at=fields.moment("created_at"),
            last_fired_at=fields.opt_moment("last_fired_at"),
            runs=fields.whole("runs"),
            skipped=fields.whole("skipped"),
            warnings=fields.texts("warnings"),
            next_elapse=fields.opt_moment("next_elapse"),
            last_run=None if last is None else LastRun.read(last),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class ScheduleDeleted(Model):
    deleted: str  # its id
    canceled_runs: tuple[str, ...]  # its runs that were still waiting

    @classmethod
    def read(cls, fields: Fields) -> ScheduleDeleted:
        return cls(
            deleted=fields.text("deleted"),
            canceled_runs=fields.texts("canceled_runs"),
            raw=fields.data,
        )
