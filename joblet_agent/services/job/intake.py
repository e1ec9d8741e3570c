"""A job request on its way in: its record (QUEUED, or SCHEDULED for a start time), what
waits with it in its directory until it starts, and its timer. All or nothing: a request
refused on the way leaves no record, no directory, no timer."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.job import JobRecord, JobSpec, JobState
from joblet_agent.domain.schedule import ScheduleRecord
from joblet_agent.domain.when import WHEN_RULE, When, WhenKind, check_ahead, start_time
from joblet_agent.errors import ErrorCode, JobletError, invalid
from joblet_agent.ports import Calendar, Clock, JobFiles
from joblet_agent.services.job.queue import JobQueue
from joblet_agent.services.job.records import JobRecords
from joblet_agent.services.job.timers import JobTimers
from joblet_agent.units.job import environment_file
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)


class JobIntake:
    def __init__(
        self,
        config: AgentConfig,
        records: JobRecords,
        files: JobFiles,
        clock: Clock,
        *,
        queue: JobQueue,
        timers: JobTimers,
        calendar: Calendar | None,
    ) -> None:
        self.config = config
        self.records = records
        self.files = files
        self.clock = clock
        self.queue = queue
        self.timers = timers
        self.calendar = calendar  # local start times, as systemd reads them

    def record(
        self,
        spec: JobSpec,
        owner: str,
        warnings: tuple[str, ...],
        *,
        priority: int,
        upload: Path | None,
        start: datetime | None,
        manages_all: bool = False,
    ) -> JobRecord:
        """The job's record, QUEUED (or SCHEDULED for `start`), and what waits with it in its
        directory (its upload's tree, its secret values: root-only, JobFiles.stage); all or
        nothing."""
        record = JobRecord(
            id=str(uuid.uuid4()),
            spec=spec,
            state=JobState.SCHEDULED,
            owner=owner,
            created_at=self.clock.now(),
            warnings=warnings,
            priority=priority,
            scheduled_for=start,
            manages_all=manages_all,
        )
        paths = self._paths(record.id)
        secrets = environment_file(spec.secret_env) if spec.secret_env else None
        try:
            self.files.stage(paths, upload=upload, secrets=secrets)
            if start is not None:
                self.records.save(record)
                return record
            return self.queue.join(record)
        except BaseException:
            self.files.remove(paths)
            if self.records.get(record.id) is not None:
                self.records.delete(record.id)
            raise

    async def start_time(self, when: When) -> datetime:
        """The instant a one-shot `schedule` names: in the future, else a 400 naming it."""
        now = self.clock.now()
        try:
            if when.kind is WhenKind.LOCAL:
                if self.calendar is None:
                    raise JobletError(ErrorCode.UNSUPPORTED, "this agent reads no local times")
                when = dataclasses.replace(when, at=await self.calendar.timestamp(when.text))
            at = start_time(when, now)
            check_ahead("schedule", when, at, now)
        except JobletError as exc:
            if exc.code is not ErrorCode.INVALID:
                raise  # systemd-analyze could not answer: not the caller's mistake
            raise invalid("schedule", when.text, f"systemd: {exc.message}; {WHEN_RULE}") from exc
        except ValueError as exc:
            raise invalid("schedule", when.text, str(exc)) from exc
        return at

    async def arm(self, record: JobRecord) -> None:
        """Its timer; if PID 1 refuses it, nothing of the job is left."""
        try:
            await self.timers.arm(record)
        except BaseException:
            self.records.delete(record.id)
            self.files.remove(self._paths(record.id))
            raise

    def run(self, schedule: ScheduleRecord, *, due: datetime, late: bool) -> JobRecord:
        """A run of a recurring schedule, for its firing at `due`: a job like any (it joins
        the queue now), linked to the schedule."""
        self.queue.check_room(schedule.owner)
        warnings = schedule.warnings
        if late:
            when = due.isoformat(timespec="seconds")
            warnings += (
                f"its schedule's firing at {when} passed while no agent ran: it ran when the "
                "agent started",
            )
        record = JobRecord(
            id=str(uuid.uuid4()),
            spec=schedule.spec.job,
            state=JobState.SCHEDULED,
            owner=schedule.owner,
            created_at=self.clock.now(),
            warnings=warnings,
            priority=schedule.spec.priority,
            scheduled_for=due,
            schedule=schedule.id,
            manages_all=schedule.manages_all,
        )
        paths = self._paths(record.id)
        try:
            self.files.stage(paths, upload=None, secrets=None)
            record = self.queue.join(record)
        except BaseException:
            self.files.remove(paths)
            raise
        logger.info(
            "schedule %s fired: job %s",
            schedule.id,
            record.id,
            extra={"JOB_ID": record.id, "SCHEDULE_ID": schedule.id},
        )
        self.queue.admit()
        return record

    def _paths(self, job_id: str) -> JobPaths:
        return JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)
