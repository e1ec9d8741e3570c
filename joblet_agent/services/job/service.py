"""The job engine's use cases: parsed job requests become records, wait in the queue for room,
then become transient units (admission, start); PID 1's signals move their records along
(lifecycle); stop, cancel, delete.

Split by idea: records.py (the records, found by id, prefix or name), admission.py (runtime,
upload, user), queue.py (when a job starts: the agent's caps and its owner's), start.py (the
unit and what it needs), owner_slices.py (each owner's quota), lifecycle.py (signals, ends,
reconcile).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from joblet_agent.domain.admission import check_ever_fits, default_within
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.jobspec import ValidatedRequest
from joblet_agent.domain.sharing import Principal
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import (
    Calendar,
    Clock,
    JobDone,
    JobFiles,
    JobStore,
    Journal,
    RuntimeCatalog,
    SystemdManager,
    UnitGone,
)
from joblet_agent.services.job.admission import UserPool, room_for_upload, with_runtime
from joblet_agent.services.job.intake import JobIntake
from joblet_agent.services.job.lifecycle import JobLifecycle
from joblet_agent.services.job.lifetime import JobLifetime
from joblet_agent.services.job.queue import JobQueue
from joblet_agent.services.job.records import JobRecords
from joblet_agent.services.job.retention import Retention
from joblet_agent.services.job.start import JobStarter
from joblet_agent.services.job.timers import JobTimers
from joblet_agent.services.network import NetworkService
from joblet_agent.services.upload import UploadService
from joblet_agent.services.volume import VolumeService
from joblet_agent.units import schedule as schedule_units
from joblet_agent.units.exec_channel import HOST_INIT
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)


class JobService:
    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        store: JobStore,
        journal: Journal,
        *,
        files: JobFiles,
        clock: Clock,
        uploads: UploadService,
        volumes: VolumeService,
        networks: NetworkService | None = None,
        runtimes: RuntimeCatalog | None = None,
        calendar: Calendar | None = None,
        root: PurePosixPath,
        init: PurePosixPath = HOST_INIT,
    ) -> None:
        """`root`: the job-root skeleton new jobs get (adapters/job_root.py prepares it);
        `init`: the host's joblet-init, every job's main process (units/exec_channel.py)."""
        self.config = config
        self.host = host
        self.files = files
        self.clock = clock
        self.uploads = uploads
        self.volumes = volumes
        self.networks = networks
        self.runtimes = runtimes
        self.root = root
        self.records = JobRecords(store)
        if networks is not None:
            self.records.on_ended.append(networks.job_ended)  # its address is free again
        self.journal = journal  # log streams read it (api/log_stream.py)
        self.lifecycle = JobLifecycle(
            config, host, self.records, files=files, journal=journal, clock=clock
        )
        self.retention = Retention(config, self.records, files=files, clock=clock, uploads=uploads)
        self.lifetime = JobLifetime(config, self.records, clock)  # extend, pause, idle
        self.records.on_ended.append(self.lifetime.forget)
        self.starter = JobStarter(
            config,
            host,
            self.records,
            files=files,
            clock=clock,
            lifecycle=self.lifecycle,
            users=UserPool(config.jobs),
            volumes=volumes,
            networks=networks,
            runtimes=runtimes,
            root=root,
            init=init,
        )
        self.queue = JobQueue(config, host, self.records, clock=clock)
        self.queue.start = lambda record: self._start(record, refuse=False)
        self.timers = JobTimers(config, self.records, self.queue, clock=clock)
        self.intake = JobIntake(
            config,
            self.records,
            files,
            clock,
            queue=self.queue,
            timers=self.timers,
            calendar=calendar,
        )
        # Firings of timers that are no job's: recurring schedules' (services/schedule.py).
        self.on_other_firing: Callable[[JobDone | UnitGone], None] = lambda event: None

    def attach(self, systemd: SystemdManager) -> None:
        self.lifecycle.systemd = systemd
        self.timers.systemd = systemd
        self.lifetime.systemd = systemd
        self.volumes.attach(systemd)

    # -- queries --------------------------------------------------------------------------

    def resolve(self, reference: str) -> JobRecord:
        """By id, name or unique id prefix (records.py)."""
        return self.records.resolve(reference)

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        schedule: str | None = None,
    ) -> list[JobRecord]:
        return self.records.list(
            states=states, owner=owner, limit=limit, offset=offset, schedule=schedule
        )

    def queue_positions(self) -> dict[str, int]:
        """Each QUEUED job's place in the queue, from 1 (GET /v1/jobs shows it)."""
        return self.queue.positions()

    async def unit_properties(self, record: JobRecord) -> dict[str, Any] | None:
        return await self.lifecycle.pid1.unit_properties(record.unit)

    async def wait(
        self,
        job_id: str,
        *,
        within: float | None = None,
        until: Callable[[JobRecord], bool] = lambda r: r.state.is_terminal,
    ) -> JobRecord:
        return await self.records.wait(job_id, within=within, until=until)

    # -- commands -------------------------------------------------------------------------

    async def submit(
        self,
        request: ValidatedRequest,
        owner: str,
        *,
        may_create_volumes: bool = False,
        may_create_networks: bool = False,
        manages_all: bool = False,
    ) -> JobRecord:
        """`may_create_*`: the caller may make volumes (networks), so those the job names that
        do not exist yet are made, the owner's (volumes of jobs.auto_volume_size; networks a
        free /24), as the design document's examples expect; a warning on the job says so.
        `manages_all`: the owner's role uses everyone's volumes and networks (maintainer,
        admin); else only their own and those shared with them (domain/sharing.py)."""
        by = Principal(owner, manages_all=manages_all)
        spec, runtime, runtime_warnings = with_runtime(request.spec, self.runtimes)
        warnings = request.warnings + runtime_warnings
        if not request.memory_given:
            limits = default_within(spec.limits, owner, self.queue.capacity)
            spec = dataclasses.replace(spec, limits=limits)
        check_ever_fits(spec.limits, owner, self.queue.capacity)
        self.queue.check_room(owner)
        # Refused before anything is made or taken (the upload): bindings() and plan() check
        # again when it starts (it may wait in the queue first), as its volumes are mounted and
        # its place on its network is taken.
        self.volumes.check_use(spec.volumes, by)
        if self.networks is not None:
            self.networks.check_join(spec, by)
        if may_create_volumes:
            warnings += await self.volumes.create_missing(spec.volumes, by)
        if may_create_networks and self.networks is not None:
            warnings += await self.networks.create_missing(spec, owner)
        upload = None
        if spec.upload is not None:
            upload, received = self.uploads.take(spec.upload, owner)
        try:
            if upload is not None:
                spec = room_for_upload(
                    spec,
                    received,
                    work_bytes_given=request.work_bytes_given,
                    most=self.config.jobs.max_work_bytes,
                )
            # A typo is a 400 now, for a job that waits too (its start looks again).
            self.starter.find_program(spec, runtime, upload)
            start = await self.intake.start_time(request.when) if request.when else None
            record = self.intake.record(
                spec,
                owner,
                warnings,
                priority=request.priority,
                upload=upload,
                start=start,
                manages_all=manages_all,
            )
        finally:
            if spec.upload:
                # Its tree waits with the job now, or went with the refused job: the rest goes.
                self.uploads.discard(spec.upload)
        if record.waiting_for_time:
            await self.intake.arm(record)
            return record
        admitted = self.queue.admit(awaited=record.id)
        if admitted is None:
            logger.info("job %s of %s is queued", record.id, owner, extra={"JOB_ID": record.id})
            return self.records.current(record.id)
        return await self._start(admitted, refuse=True)

    async def _start(self, record: JobRecord, *, refuse: bool) -> JobRecord:
        """Its unit started (JobStarter), then its idle clock, if it has one."""
        started = await self.starter.start(record, refuse=refuse)
        self.lifetime.watch(started)
        return started

    async def stop(self, reference: str) -> JobRecord:
        record = self.resolve(reference)
        if record.state.is_terminal:
            raise JobletError(ErrorCode.CONFLICT, f"job {record.id} already ended ({record.state})")
        self.records.save(record.evolve(stop_requested=True))
        # SIGTERM to the whole control group, TimeoutStopSec of grace, then SIGKILL: systemd's job.
        await self.lifecycle.pid1.stop(record.unit)
        return await self.wait(record.id, within=self.config.jobs.stop_grace_sec + 10)

    async def cancel(self, reference: str) -> JobRecord:
        """Cancel a job that has not started running: QUEUED, or SCHEDULED (for later, or its
        unit starting)."""
        record = self.resolve(reference)
        if record.state not in (JobState.SCHEDULED, JobState.QUEUED):
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}; only SCHEDULED and QUEUED jobs can be "
                "canceled",
                hint=None if record.state.is_terminal else "stop it: rnx job stop " + record.id[:8],
            )
        self.records.save(
            record.evolve(
                state=JobState.CANCELED, ended_at=self.clock.now(), reason="canceled before it ran"
            )
        )
        self.files.forget_secrets(self._paths(record.id))
        if record.waiting_for_time:
            self.timers.disarm_soon(record.id)
        elif record.holds_capacity:
            await self.lifecycle.pid1.stop(record.unit)  # its unit may be starting
        return self.records.current(record.id)

    async def delete(self, reference: str) -> JobRecord:
        record = self.resolve(reference)
        if not record.state.is_terminal:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}",
                hint="stop it first: rnx job stop " + record.id[:8],
            )
        self.records.delete(record.id)
        self.files.remove(self._paths(record.id))
        logger.info("deleted job %s", record.id, extra={"JOB_ID": record.id})
        return record

    async def delete_all(self, owner: str | None) -> tuple[int, int]:
        """Deletes every ended job (of `owner`, if given); returns (deleted, skipped running)."""
        deleted = skipped = 0
        for record in self.records.list(owner=owner):
            if record.state.is_terminal:
                await self.delete(record.id)
                deleted += 1
            else:
                skipped += 1
        return deleted, skipped

    # -- PID 1 ----------------------------------------------------------------------------

    def on_systemd_event(self, event: JobDone | UnitGone) -> None:
        if schedule_units.fired(event.unit) is not None:
            if not self.timers.on_event(event):
                self.on_other_firing(event)
            return
        self.lifecycle.on_systemd_event(event)

    async def reconcile(self) -> None:
        await self.lifecycle.reconcile()
        await self.timers.reconcile()
        for record in self.records.live():
            self.lifetime.watch(record)  # idle clocks start again now (running jobs')
        self.queue.admit()  # what waited while the agent was away, as far as there is room

    async def settle(self) -> None:
        await self.queue.settle()
        await self.timers.settle()
        await self.lifecycle.settle()

    def _paths(self, job_id: str) -> JobPaths:
        return JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)

    async def roots_in_use(self) -> set[str]:
        return await self.lifecycle.roots_in_use(self.root)
