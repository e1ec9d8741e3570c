"""The job engine's use cases: parsed job requests become transient units (admission, start);
PID 1's signals move their records along (lifecycle); stop, cancel, delete.

Split by idea: records.py (the records, found by id, prefix or name), admission.py (runtime,
upload, user), start.py (the unit and what it needs), lifecycle.py (signals, ends, reconcile).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.domain.jobspec import ValidatedRequest
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.ports import (
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
from joblet_agent.services.job.lifecycle import JobLifecycle
from joblet_agent.services.job.lifetime import JobLifetime
from joblet_agent.services.job.records import JobRecords
from joblet_agent.services.job.start import Admitted, JobStarter
from joblet_agent.services.network import NetworkService
from joblet_agent.services.upload import UploadService
from joblet_agent.services.volume import VolumeService
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
            root=root,
            init=init,
        )

    def attach(self, systemd: SystemdManager) -> None:
        self.lifecycle.systemd = systemd
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
    ) -> list[JobRecord]:
        return self.records.list(states=states, owner=owner, limit=limit, offset=offset)

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
    ) -> JobRecord:
        """`may_create_*`: the caller may manage volumes (networks), so those the job names that
        do not exist yet are created (volumes of jobs.auto_volume_size; networks a free /24), as
        the design document's examples expect; a warning on the job says so."""
        spec, runtime, runtime_warnings = with_runtime(request.spec, self.runtimes)
        warnings = request.warnings + runtime_warnings
        if may_create_volumes:
            warnings += await self.volumes.create_missing(spec.volumes, owner)
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
            record = await self.starter.start(Admitted(spec, owner, warnings, runtime, upload))
            self.lifetime.watch(record)
            return record
        finally:
            if spec.upload:
                # Its tree is the job's /work now, or went with the refused job: the rest goes.
                self.uploads.discard(spec.upload)

    async def stop(self, reference: str) -> JobRecord:
        record = self.resolve(reference)
        if record.state.is_terminal:
            raise JobletError(ErrorCode.CONFLICT, f"job {record.id} already ended ({record.state})")
        self.records.save(record.evolve(stop_requested=True))
        # SIGTERM to the whole control group, TimeoutStopSec of grace, then SIGKILL: systemd's job.
        await self.lifecycle.pid1.stop(record.unit)
        return await self.wait(record.id, within=self.config.jobs.stop_grace_sec + 10)

    async def cancel(self, reference: str) -> JobRecord:
        """Cancel a job that has not started running (a scheduled one)."""
        record = self.resolve(reference)
        if record.state is not JobState.SCHEDULED:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}; only SCHEDULED jobs can be canceled",
                hint=None if record.state.is_terminal else "stop it: rnx job stop " + record.id[:8],
            )
        self.records.save(
            record.evolve(
                state=JobState.CANCELED, ended_at=self.clock.now(), reason="canceled before it ran"
            )
        )
        await self.lifecycle.pid1.stop(record.unit)
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
        self.files.remove(JobPaths.for_job(PurePosixPath(self.config.jobs_dir), record.id))
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
        self.lifecycle.on_systemd_event(event)

    async def reconcile(self) -> None:
        await self.lifecycle.reconcile()
        for record in self.records.live():
            self.lifetime.watch(record)  # idle clocks start again now

    async def settle(self) -> None:
        await self.lifecycle.settle()

    async def roots_in_use(self) -> set[str]:
        return await self.lifecycle.roots_in_use(self.root)
