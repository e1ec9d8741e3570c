"""Recurring schedules: the resource (POST /v1/schedules). Pure.

A schedule is a systemd calendar expression (judged by systemd: adapters/calendar.py) and a job
spec; each firing of its timer (units/schedule.py) makes a job of that spec, linked to the
schedule (JobRecord.schedule), whose logs and metrics are kept like any job's. While a run has
not ended, a firing does what `overlap` says; a firing missed while no agent ran makes one run
at the agent's start when `catch_up` (the default, like Persistent=).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from joblet_agent.domain.config import JobPolicy
from joblet_agent.domain.fields import HIDDEN, Fields
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobSpec
from joblet_agent.domain.jobspec import ValidatedRequest, parse_job_request
from joblet_agent.domain.when import WHEN_RULE, parse_when

SCHEDULE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # as jobs' names


class Overlap(StrEnum):
    """What a firing does while a run of the schedule has not ended."""

    SKIP = "skip"  # nothing (counted): at most one run at a time; systemd's own timers do this
    QUEUE = "queue"  # a run that waits QUEUED until the previous ends (at most one waits)
    PARALLEL = "parallel"  # a run, whatever the others do


class ScheduleState(StrEnum):
    ACTIVE = "ACTIVE"  # its timer fires
    PAUSED = "PAUSED"  # no timer; firings missed meanwhile never run


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A validated schedule: when (a calendar expression systemd accepted, and its normal
    form), what each run is (a job spec, unnamed), and how runs behave."""

    calendar: str
    normalized: str
    job: JobSpec
    priority: int
    overlap: Overlap = Overlap.SKIP
    catch_up: bool = True  # a firing missed while no agent ran runs once at its start

    def to_dict(self) -> dict[str, Any]:
        return {
            "calendar": self.calendar,
            "normalized": self.normalized,
            "job": self.job.to_dict(with_secrets=False),
            "priority": self.priority,
            "overlap": str(self.overlap),
            "catch_up": self.catch_up,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        return cls(
            calendar=data["calendar"],
            normalized=data["normalized"],
            job=JobSpec.from_dict(data["job"]),
            priority=data["priority"],
            overlap=Overlap(data["overlap"]),
            catch_up=data["catch_up"],
        )


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A schedule as the agent remembers it; replaced, never mutated."""

    id: str
    name: str | None
    owner: str
    spec: ScheduleSpec
    state: ScheduleState
    created_at: datetime
    last_fired_at: datetime | None = None  # its timer's last trigger that counted
    runs: int = 0  # jobs its firings made
    skipped: int = 0  # firings that made none (overlap: skip, or the queue full)
    warnings: tuple[str, ...] = ()
    # Its owner's role used everyone's volumes and networks when it was made (maintainer,
    # admin): its runs do too, as a queued job does. Stored, never shown.
    manages_all: bool = False

    @property
    def timer(self) -> str:
        return f"joblet-sched-{self.id}.timer"

    def evolve(self, **changes: Any) -> ScheduleRecord:
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, stored: bool = False) -> dict[str, Any]:
        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        data = {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "spec": self.spec.to_dict(),
            "state": str(self.state),
            "timer": self.timer,
            "created_at": iso(self.created_at),
            "last_fired_at": iso(self.last_fired_at),
            "runs": self.runs,
            "skipped": self.skipped,
            "warnings": list(self.warnings),
        }
        if stored:
            data["manages_all"] = self.manages_all
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleRecord:
        last = data.get("last_fired_at")
        return cls(
            id=data["id"],
            name=data["name"],
            owner=data["owner"],
            spec=ScheduleSpec.from_dict(data["spec"]),
            state=ScheduleState(data["state"]),
            created_at=datetime.fromisoformat(data["created_at"]),
            last_fired_at=datetime.fromisoformat(last) if last else None,
            runs=data.get("runs", 0),
            skipped=data.get("skipped", 0),
            warnings=tuple(data.get("warnings", ())),
            manages_all=bool(data.get("manages_all", False)),
        )


@dataclass(frozen=True, slots=True)
class ScheduleRequest:
    """POST /v1/schedules once parsed: the calendar expression still to be judged by systemd."""

    calendar: str
    name: str | None
    job: ValidatedRequest
    overlap: Overlap
    catch_up: bool


def parse_schedule_request(data: object, policy: JobPolicy, host: HostInfo) -> ScheduleRequest:
    top = Fields(data, "")
    when = top.parsed("calendar", parse_when)
    if when is None:
        raise top.error("calendar", None, f"required: {WHEN_RULE}")
    if when.one_shot:
        raise top.error(
            "calendar",
            when.text,
            "a systemd calendar expression (hourly, *:0/15, 'Mon..Fri *-*-* 02:00'); a one-shot "
            "time is a job's schedule: POST /v1/jobs with schedule (rnx job run --schedule)",
        )
    name = top.string("name")
    if name is not None and not SCHEDULE_NAME.match(name):
        raise top.error("name", name, "1-63 lowercase letters, digits and '-', like a hostname")
    overlap = top.string("overlap", str(Overlap.SKIP))
    if overlap not in {o.value for o in Overlap}:
        raise top.error("overlap", overlap, f"one of {', '.join(Overlap)}")
    catch_up = top.boolean("catch_up", True)
    job = parse_job_request(top.raw("job"), policy, host, path="job")
    spec = job.spec
    for key, given, why in (
        ("name", spec.name, "a schedule's runs have no name of their own: give the schedule one"),
        ("schedule", job.when, "the schedule says when its runs start"),
        ("upload", spec.upload, "an upload is one job's: give every run its files on a volume"),
        (
            "secret_env",
            dict(spec.secret_env) or None,
            "a schedule keeps no secret values at rest for its runs: give them on a volume",
        ),
    ):
        if given is not None:
            raise top.error(f"job.{key}", HIDDEN if key == "secret_env" else given, why)
    top.reject_unknown()
    return ScheduleRequest(when.text, name, job, Overlap(overlap), catch_up)
