"""Starting an admitted job (its record made at submit, out of the queue now): its user and
network place, its files and /work image, its owner's slice, its unit and the helper units beside
it, in that order, and nothing left half-done when any of it fails."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import BASE_READ_ONLY, JobRecord, JobSpec, JobState
from joblet_agent.domain.runtime_binding import InstalledRuntime
from joblet_agent.domain.sharing import Principal
from joblet_agent.domain.user import JobUser
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import Clock, JobFiles, RuntimeCatalog
from joblet_agent.services.job.admission import UserPool, with_runtime
from joblet_agent.services.job.lifecycle import JobLifecycle
from joblet_agent.services.job.owner_slices import OwnerSlices
from joblet_agent.services.job.records import HOLDING, JobRecords
from joblet_agent.services.network import NetworkService
from joblet_agent.services.volume import VolumeService
from joblet_agent.units import end_record, upload
from joblet_agent.units.deadline import deadline_units
from joblet_agent.units.exec_channel import channel_socket
from joblet_agent.units.job import job_environment, throttles_io, translate
from joblet_agent.units.network import NO_NETWORK, JobNetwork, helper_units
from joblet_agent.units.owner import owner_slice
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from joblet_agent.units.runtime import runtime_mounts

logger = logging.getLogger(__name__)

START_TIMEOUT_SEC = 60.0
# Moving an upload into /work: a gibibyte takes seconds; jobs.max_upload_size may be larger.
UPLOAD_MOVE_TIMEOUT_SEC = 600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Admitted:
    """A job ready to start: its bound spec, the runtime it names, its upload's tree."""

    spec: JobSpec
    owner: str
    warnings: tuple[str, ...]
    runtime: InstalledRuntime | None
    upload: Path | None
    manages_all: bool = False  # its owner uses everyone's volumes and networks

    @property
    def by(self) -> Principal:
        return Principal(self.owner, manages_all=self.manages_all)


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
        runtimes: RuntimeCatalog | None,
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
        self.runtimes = runtimes
        self.root = root
        self.init = init
        # Each job's quota slice is set once per agent (SetUnitProperties keeps it in /run).
        self.owner_slices = OwnerSlices(config)

    async def start(self, record: JobRecord, *, refuse: bool) -> JobRecord:
        """The unit of an admitted job (its record SCHEDULED, out of the queue), with everything
        it needs first. Returns once its program was exec'd (or its start failed), at most
        START_TIMEOUT_SEC. Nothing is left half-done when it fails: no unit, no files, no
        network place; and with `refuse` (its submitter is waiting) no record either, and the
        error is raised; else its record says FAILED and why."""
        job_id = record.id
        paths = JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)
        unit = record.unit
        try:
            job = self._admitted(record, paths)
            record, network, user = await self._claim(record, job)
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
            )
            if job.upload is not None:
                await self._move_upload(paths, user)
            await self.files.finish(paths, flush=throttles_io(record.spec.limits, self.host))
            aux = end_record.recorder_units(job_id, paths.end_record, self.config.slice)
            aux.append(channel_socket(job_id, paths.channel))
            if record.spec.limits.timeout_sec is not None:
                aux += deadline_units(job_id, 0, record.spec.limits.timeout_sec, self.config.slice)
            aux += helper_units(network, paths, self.config.slice)
            if self.networks and network.attached:
                self.networks.write_job_files(paths, network)
            await self.owner_slices.ensure(self.lifecycle.pid1, record.owner)
            if self.records.current(job_id).state is JobState.CANCELED:
                # Canceled while its files were made, when PID 1 had no unit to stop: it never
                # starts; its record stays (CANCELED), the rest goes. No await from this check to
                # StartTransientUnit's send, so a later cancel finds the unit (found by
                # tests/integration/test_job_starts.py).
                self.lifecycle.forget(unit)
                self.files.remove(paths)
                self._release_network(job_id)
                return self.records.current(job_id)
            started = self.lifecycle.expect(unit)
            await self.lifecycle.pid1.start_transient(unit, properties, aux=aux)
        except BaseException as exc:
            # Nothing half-done: no directory, no network (and systemd made no unit).
            self.lifecycle.forget(unit)
            self.files.remove(paths)
            self._release_network(job_id)
            if refuse or not isinstance(exc, Exception):
                self.records.delete(job_id)
                raise
            return self._failed_to_start(record, exc)
        logger.info(
            "started %s for %s: %s",
            unit,
            record.owner,
            excerpt(record.spec.argv, 200),  # up to 1 MiB of arguments: never whole, per job
            extra={"JOB_ID": job_id, "UNIT": unit, "JOB_OWNER": record.owner},
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

    async def _move_upload(self, paths: JobPaths, user: JobUser) -> None:
        """The upload's files into the job's /work image, by a helper unit as the job's user
        (units/upload.py): one copy on disk at a time, never two."""
        unit = upload.helper_unit(paths.root.name)
        properties = upload.mover_properties(paths, user, self.config.slice)
        result = await self.lifecycle.pid1.run(unit, properties, within=UPLOAD_MOVE_TIMEOUT_SEC)
        if result != "done":
            raise JobletError(
                ErrorCode.SYSTEMD,
                f"upload: its files could not be moved into the job's /work ({result})",
                hint=f"journalctl -u {unit} says why",
            )

    def _admitted(self, record: JobRecord, paths: JobPaths) -> Admitted:
        """Its runtime found again (it may have been removed while the job waited), and the
        upload's tree that waited with it (JobFiles.stage)."""
        spec, runtime, _warnings = with_runtime(record.spec, self.runtimes)
        upload = Path(paths.upload) if spec.upload else None
        return Admitted(
            spec,
            record.owner,
            record.warnings,
            runtime,
            upload,
            manages_all=record.manages_all,
        )

    def _failed_to_start(self, record: JobRecord, exc: Exception) -> JobRecord:
        """A job started from the queue, with no one waiting for the answer: its record says."""
        why = exc.message if isinstance(exc, JobletError) else f"internal error: {exc!r}"
        logger.warning("job %s failed to start: %s", record.id, why, extra={"JOB_ID": record.id})
        current = self.records.get(record.id)
        if current is None or current.state.is_terminal:
            return current or record
        failed = current.evolve(
            state=JobState.FAILED, reason=f"failed to start: {why}", ended_at=self.clock.now()
        )
        self.records.save(failed)
        return failed

    async def _claim(
        self, record: JobRecord, job: Admitted
    ) -> tuple[JobRecord, JobNetwork, JobUser]:
        """Its place on its network and its user, both reserved, in its record."""
        holding = self.records.list(states=HOLDING)
        user = self.users.claim({r.user for r in holding if r.id != record.id})
        try:
            spec, network = await self._plan_network(record.id, job)
            record = self.records.current(record.id).evolve(
                spec=spec, user=user.name, endpoint=network.endpoint
            )
            self.records.save(record)
        except BaseException:
            self._release_network(record.id)
            raise
        finally:
            # Until the record holds it, the claim keeps a concurrent start off this user.
            self.users.recorded(user)
        return record, network, user

    def find_program(
        self, spec: JobSpec, runtime: InstalledRuntime | None, upload: Path | None
    ) -> str:
        """The program to exec, looked for in the job's own root as it will be (its /work: the
        upload's tree, if any; its runtime): absolute, as the job sees it."""
        paths = JobPaths.for_job(PurePosixPath(self.config.jobs_dir), "checking")
        mounts = runtime_mounts(runtime, BASE_READ_ONLY) if runtime else None
        # Before the job runs, its /work holds the upload and nothing else.
        seen = dataclasses.replace(paths, work=PurePosixPath(upload)) if upload else paths
        path_env = job_environment("", spec, runtime)["PATH"]
        return self.files.find_program(spec.command, path_env, seen, mounts)

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
        """Its program found in its root, its volumes mounted, and the translation of it all."""
        return translate(
            job_id,
            spec,
            self.config,
            self.host,
            paths,
            root=self.root,
            user=user,
            executable=self.find_program(spec, job.runtime, job.upload),
            init=self.init,
            volumes=await self.volumes.bindings(spec.volumes, job.by),
            network=network,
            runtime=job.runtime,
            slice_name=owner_slice(self.config.slice, job.owner),
        )

    async def _plan_network(self, job_id: str, job: Admitted) -> tuple[JobSpec, JobNetwork]:
        if self.networks is None:
            if job.spec.network != "none":
                raise JobletError(ErrorCode.UNSUPPORTED, "this agent has no networks")
            return job.spec, NO_NETWORK
        return await self.networks.plan(job_id, job.spec, job.by)

    def _release_network(self, job_id: str) -> None:
        if self.networks is not None:
            self.networks.release(job_id)
