"""Starting an admitted job: its record, its files and /work image, its unit and the helper
units beside it, in that order, and nothing left half-done when any of it fails."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import BASE_READ_ONLY, JobRecord, JobSpec, JobState
from joblet_agent.domain.runtime_binding import InstalledRuntime
from joblet_agent.domain.user import JobUser
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import Clock, JobFiles
from joblet_agent.services.job.admission import UserPool
from joblet_agent.services.job.lifecycle import JobLifecycle
from joblet_agent.services.job.records import JobRecords
from joblet_agent.services.network import NetworkService
from joblet_agent.services.volume import VolumeService
from joblet_agent.units import end_record
from joblet_agent.units.deadline import deadline_units
from joblet_agent.units.exec_channel import channel_socket
from joblet_agent.units.job import environment_file, job_environment, throttles_io, translate
from joblet_agent.units.network import NO_NETWORK, JobNetwork, helper_units
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from joblet_agent.units.runtime import runtime_mounts

logger = logging.getLogger(__name__)

START_TIMEOUT_SEC = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    """A job ready to start: its bound spec, the runtime it names, its upload's tree."""

    spec: JobSpec
    owner: str
    warnings: tuple[str, ...]
    runtime: InstalledRuntime | None
    upload: Path | None


class JobStarter:
    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        records: JobRecords,
        *,
        files: JobFiles,
        clock: Clock,
        lifecycle: JobLifecycle,
        users: UserPool,
        volumes: VolumeService,
        networks: NetworkService | None,
        root: PurePosixPath,
        init: PurePosixPath,
    ) -> None:
        self.config = config
        self.host = host
        self.records = records
        self.files = files
        self.clock = clock
        self.lifecycle = lifecycle
        self.users = users
        self.volumes = volumes
        self.networks = networks
        self.root = root
        self.init = init

    async def start(self, job: Admitted) -> JobRecord:
        """The unit of an admitted job, with everything it needs first; nothing half-done.
        Returns once its program was exec'd (or its start failed), at most START_TIMEOUT_SEC."""
        job_id = str(uuid.uuid4())
        paths = JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)
        record, network, user = await self._record(job_id, job)
        unit = record.unit
        try:
            # Before the files: the program is looked for in the upload's tree, which goes once
            # the /work image holds it.
            properties = await self._unit_properties(
                job_id, record.spec, paths, user, job=job, network=network
            )
            await self.files.create(
                paths,
                user,
                workdir=record.spec.workdir,
                work_bytes=record.spec.limits.work_bytes or 0,
                upload=job.upload,
                flush=throttles_io(record.spec.limits, self.host),
            )
            aux = end_record.recorder_units(job_id, paths.end_record, self.config.slice)
            aux.append(channel_socket(job_id, paths.channel))
            if record.spec.limits.timeout_sec is not None:
                aux += deadline_units(job_id, 0, record.spec.limits.timeout_sec, self.config.slice)
            aux += helper_units(network, paths, self.config.slice)
            if self.networks and network.attached:
                self.networks.write_job_files(paths, network)
            if record.spec.secret_env:
                self.files.write_secrets(paths, environment_file(record.spec.secret_env))
            started = self.lifecycle.expect(unit)
            await self.lifecycle.pid1.start_transient(unit, properties, aux=aux)
        except BaseException:
            # Nothing half-done: no record, no directory, no network (and systemd made no unit).
            self.lifecycle.forget(unit)
            self.records.delete(job_id)
            self.files.remove(paths)
            self._release_network(job_id)
            raise
        logger.info(
            "started %s for %s: %s",
            unit,
            job.owner,
            excerpt(record.spec.argv, 200),  # up to 1 MiB of arguments: never whole, per job
            extra={"JOB_ID": job_id, "UNIT": unit, "JOB_OWNER": job.owner},
        )
        try:
            # Type=exec: the start job ends once exec() succeeded (or failed, with a reason).
            result = await asyncio.wait_for(asyncio.shield(started), START_TIMEOUT_SEC)
        except TimeoutError:
            logger.warning("start of %s still pending after %ss", unit, START_TIMEOUT_SEC)
        else:
            # The job's process has its environment now: the values need not stay on disk.
            self.files.forget_secrets(paths)
            if result == "done":
                await self.lifecycle.limit_running(record)
        return self.records.current(job_id)

    async def _record(self, job_id: str, job: Admitted) -> tuple[JobRecord, JobNetwork, JobUser]:
        """Its place on its network and its user, both reserved, and its record (SCHEDULED)."""
        user = self.users.claim({r.user for r in self.records.live()})
        try:
            spec, network = await self._plan_network(job_id, job.spec)
            record = JobRecord(
                id=job_id,
                spec=spec,
                state=JobState.SCHEDULED,
                owner=job.owner,
                created_at=self.clock.now(),
                warnings=job.warnings,
                user=user.name,
                endpoint=network.endpoint,
            )
            self.records.save(record)
        except BaseException:
            self._release_network(job_id)
            raise
        finally:
            # Until the record holds it, the claim keeps a concurrent submit off this user.
            self.users.recorded(user)
        return record, network, user

    async def _unit_properties(
        self,
        job_id: str,
        spec: JobSpec,
        paths: JobPaths,
        user: JobUser,
        *,
        job: Admitted,
        network: JobNetwork,
    ) -> Sequence[Property]:
        """Its program found in its root (its /work: the upload's tree, if any), its volumes
        mounted, and the translation of it all."""
        mounts = runtime_mounts(job.runtime, BASE_READ_ONLY) if job.runtime else None
        # Before the job runs, its /work holds the upload and nothing else.
        seen = dataclasses.replace(paths, work=PurePosixPath(job.upload)) if job.upload else paths
        command = self.files.find_program(
            spec.command, job_environment(job_id, spec, job.runtime)["PATH"], seen, mounts
        )
        return translate(
            job_id,
            spec,
            self.config,
            self.host,
            paths,
            root=self.root,
            user=user,
            executable=command,
            init=self.init,
            volumes=await self.volumes.bindings(spec.volumes),
            network=network,
            runtime=job.runtime,
        )

    async def _plan_network(self, job_id: str, spec: JobSpec) -> tuple[JobSpec, JobNetwork]:
        if self.networks is None:
            if spec.network != "none":
                raise JobletError(ErrorCode.UNSUPPORTED, "this agent has no networks")
            return spec, NO_NETWORK
        return await self.networks.plan(job_id, spec)

    def _release_network(self, job_id: str) -> None:
        if self.networks is not None:
            self.networks.release(job_id)
