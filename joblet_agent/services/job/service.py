"""The job engine: validated specs become transient units; systemd's signals move records along.

Jobs are not children of the agent. All the engine knows about a running job comes from PID 1
(signals while it runs, properties and the journal when the agent was away), so stopping or
killing the agent never stops a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from joblet_agent.adapters.executables import resolve_command
from joblet_agent.domain.archive import Extracted
from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import (
    BASE_READ_ONLY,
    UNIT_PREFIX,
    JobRecord,
    JobSpec,
    JobState,
    job_id_of_unit,
)
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.outcome import Outcome, UnitEnd, decide
from joblet_agent.domain.runtime_binding import InstalledRuntime, bind_runtime, resolve
from joblet_agent.domain.runtime_reference import parse_reference
from joblet_agent.domain.user import JobUser, pool, pool_user
from joblet_agent.errors import ErrorCode, JobletError, excerpt
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
from joblet_agent.services.network import NetworkService
from joblet_agent.services.upload import UploadService
from joblet_agent.services.volume import VolumeService
from joblet_agent.units import end_record, kernel_log
from joblet_agent.units.job import (
    environment_file,
    job_environment,
    running_limits,
    throttles_io,
    translate,
)
from joblet_agent.units.network import NO_NETWORK, JobNetwork, helper_unit, helper_units
from joblet_agent.units.paths import JobPaths
from joblet_agent.units.properties import Property
from joblet_agent.units.runtime import runtime_mounts

logger = logging.getLogger(__name__)

MIN_PREFIX = 4
START_TIMEOUT_SEC = 60.0
KERNEL_LOG_TIMEOUT_SEC = 30.0
NETWORK_STOP_TIMEOUT_SEC = 30.0
_RUNNING = ("active", "reloading", "deactivating")
_LIVE = frozenset({JobState.SCHEDULED, JobState.RUNNING})
RECORD_WAIT_SEC = 10.0
# The units whose signals the engine needs: jobs' own, and their end recorders'.
UNIT_PREFIXES = (UNIT_PREFIX, end_record.PREFIX)


def _room_for_upload(
    spec: JobSpec, received: Extracted, request: Mapping[str, Any], most: int
) -> JobSpec:
    """A /work big enough for the upload: grown from the default when the job named no size,
    refused (naming the size needed) when it named one too small, or when the agent's maximum is."""
    # Files round up to 4 KiB blocks; mkfs.ext4 makes one inode per 16 KiB; 10% + 16 MiB for
    # the filesystem's own metadata and some room to write.
    blocks = received.bytes + received.entries * 4096
    needed = max(blocks, received.entries * 16384) * 11 // 10 + 16 * 1024**2
    needed = -(-needed // 1024**2) * 1024**2
    have = spec.limits.work_bytes or 0
    if needed <= have:
        return spec
    asked = request.get("limits")
    if (isinstance(asked, Mapping) and "work_bytes" in asked) or needed > most:
        raise JobletError(
            ErrorCode.INVALID,
            f"limits.work_bytes: {min(have, most) if needed > most else have} is too small "
            f"for the upload ({received.files} files, {received.bytes} bytes): /work needs "
            f"at least {needed} bytes"
            + (f"; this agent allows at most {most}" if needed > most else ""),
            hint="give a larger --work-size" if needed <= most else "upload less",
        )
    return dataclasses.replace(spec, limits=dataclasses.replace(spec.limits, work_bytes=needed))


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class JobService:
    # How long a job whose unit is gone waits for its end recorder before PID 1's journal is
    # asked instead (the recorder runs after the unit's end; tests shorten it).
    record_wait_sec = RECORD_WAIT_SEC

    def __init__(
        self,
        config: AgentConfig,
        host: HostInfo,
        store: JobStore,
        journal: Journal,
        *,
        files: JobFiles,
        clock: Clock | None = None,
        uploads: UploadService | None = None,
        volumes: VolumeService | None = None,
        networks: NetworkService | None = None,
        runtimes: RuntimeCatalog | None = None,
        root: PurePosixPath | None = None,
    ) -> None:
        """`root`: the job-root skeleton new jobs get (adapters/job_root.py prepares it)."""
        self.config = config
        self.root = root or PurePosixPath(config.state_dir / "roots" / "unprepared")
        self.host = host
        self.store = store
        self.journal = journal
        self.files = files
        self.clock = clock or SystemClock()
        self.uploads = uploads or UploadService(config, self.clock)
        self.volumes = volumes or VolumeService(config, host, store, self.clock)
        self.networks = networks
        self.runtimes = runtimes
        self._claimed: set[str] = set()  # users chosen by submits not yet recorded
        self.systemd: SystemdManager | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}  # unit -> its systemd job's result
        self._finishing: set[asyncio.Task[None]] = set()
        self._finishing_ids: set[str] = set()
        self._recorded: dict[str, asyncio.Event] = {}  # job id -> its end recorder is done
        self._changed: dict[str, asyncio.Event] = {}

    def attach(self, systemd: SystemdManager) -> None:
        self.systemd = systemd
        self.volumes.attach(systemd)

    @property
    def _pid1(self) -> SystemdManager:
        assert self.systemd is not None, "attach() a systemd manager first"
        return self.systemd

    # -- queries --------------------------------------------------------------------------

    def resolve(self, id_or_prefix: str) -> JobRecord:
        """A full id or a unique prefix of at least four characters."""
        key = id_or_prefix.strip().lower()
        if len(key) < MIN_PREFIX:
            raise JobletError(
                ErrorCode.INVALID,
                f"job id: {id_or_prefix!r} is too short; give at least {MIN_PREFIX} characters",
            )
        record = self.store.get(key)
        if record:
            return record
        matches = self.store.find_prefix(key)
        if not matches:
            raise JobletError(
                ErrorCode.NOT_FOUND,
                f"no job has an id starting with {key!r}",
                hint="rnx job list shows the jobs",
            )
        if len(matches) > 1:
            shown = ", ".join(matches[:10]) + (", ..." if len(matches) > 10 else "")
            raise JobletError(
                ErrorCode.AMBIGUOUS,
                f"job id {key!r} is ambiguous; it matches: {shown}",
                hint="give more characters of the id",
            )
        found = self.store.get(matches[0])
        assert found is not None
        return found

    def list(
        self,
        *,
        states: frozenset[JobState] | None = None,
        owner: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobRecord]:
        return self.store.list(states=states, owner=owner, limit=limit, offset=offset)

    async def unit_properties(self, record: JobRecord) -> dict[str, Any] | None:
        return await self._pid1.unit_properties(record.unit)

    # -- commands -------------------------------------------------------------------------

    async def submit(
        self,
        request: Mapping[str, Any],
        owner: str,
        *,
        may_create_volumes: bool = False,
        may_create_networks: bool = False,
    ) -> JobRecord:
        """`may_create_*`: the caller may manage volumes (networks), so those the job names that
        do not exist yet are created (volumes of jobs.auto_volume_size; networks a free /24), as
        the design document's examples expect; a warning on the job says so."""
        validated = parse_job_request(request, self.config.jobs, self.host)
        spec, runtime, runtime_warnings = self._with_runtime(validated.spec)
        warnings = validated.warnings + runtime_warnings
        warnings += await self._create_missing(spec, owner, may_create_volumes, may_create_networks)
        spec, upload = self._take_upload(spec, request, owner)
        try:
            return await self._start(spec, owner, warnings, runtime=runtime, upload=upload)
        finally:
            if spec.upload:
                # Its tree is the job's /work now, or went with the refused job: the rest goes.
                self.uploads.discard(spec.upload)

    async def _start(
        self,
        spec: JobSpec,
        owner: str,
        warnings: tuple[str, ...],
        *,
        runtime: InstalledRuntime | None,
        upload: Path | None,
    ) -> JobRecord:
        """The unit of a validated job, with everything it needs first; nothing half-done."""
        job_id = str(uuid.uuid4())
        paths = self._paths(job_id)
        user = self._free_user()
        try:
            spec, network = await self._plan_network(job_id, spec)
            record = JobRecord(
                id=job_id,
                spec=spec,
                state=JobState.SCHEDULED,
                owner=owner,
                created_at=self.clock.now(),
                warnings=warnings,
                user=user.name,
                endpoint=network.endpoint,
            )
            unit = record.unit
            self.store.put(record)
        except BaseException:
            self._release_network(job_id)
            raise
        finally:
            # Until the record holds it, the claim keeps a concurrent submit off this user.
            self._claimed.discard(user.name)
        try:
            # Before the files: the program is looked for in the upload's tree, which goes once
            # the /work image holds it.
            properties = await self._unit_properties(
                job_id, spec, paths, user, runtime=runtime, network=network, work_tree=upload
            )
            await self.files.create(
                paths,
                user,
                workdir=spec.workdir,
                work_bytes=spec.limits.work_bytes or 0,
                upload=upload,
                flush=throttles_io(spec.limits, self.host),
            )
            aux = end_record.recorder_units(job_id, paths.end_record, self.config.slice)
            aux += helper_units(network, paths, self.config.slice)
            if self.networks and network.attached:
                self.networks.write_job_files(paths, network)
            if spec.secret_env:
                _write_private(Path(paths.secrets), environment_file(spec.secret_env))
            started = self._expect(unit)
            await self._pid1.start_transient(unit, properties, aux=aux)
        except BaseException:
            # Nothing half-done: no record, no directory, no network (and systemd made no unit).
            self._pending.pop(unit, None)
            self.store.delete(job_id)
            self.files.remove(paths)
            self._release_network(job_id)
            raise
        logger.info(
            "started %s for %s: %s",
            unit,
            owner,
            excerpt(spec.argv, 200),  # up to 1 MiB of arguments: never whole into the journal
            extra={"JOB_ID": job_id, "UNIT": unit, "JOB_OWNER": owner},
        )
        try:
            # Type=exec: the start job ends once exec() succeeded (or failed, with a reason).
            result = await asyncio.wait_for(asyncio.shield(started), START_TIMEOUT_SEC)
        except TimeoutError:
            logger.warning("start of %s still pending after %ss", unit, START_TIMEOUT_SEC)
        else:
            _forget_secrets(paths)
            if result == "done":
                await self._limit_running(record)
        return self._current(job_id)

    async def stop(self, id_or_prefix: str) -> JobRecord:
        record = self.resolve(id_or_prefix)
        if record.state.is_terminal:
            raise JobletError(ErrorCode.CONFLICT, f"job {record.id} already ended ({record.state})")
        self._save(record.evolve(stop_requested=True))
        # SIGTERM to the whole control group, TimeoutStopSec of grace, then SIGKILL: systemd's job.
        await self._pid1.stop(record.unit)
        return await self.wait(record.id, within=self.config.jobs.stop_grace_sec + 10)

    async def cancel(self, id_or_prefix: str) -> JobRecord:
        """Cancel a job that has not started running (a scheduled one)."""
        record = self.resolve(id_or_prefix)
        if record.state is not JobState.SCHEDULED:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}; only SCHEDULED jobs can be canceled",
                hint=None if record.state.is_terminal else "stop it: rnx job stop " + record.id[:8],
            )
        self._save(
            record.evolve(
                state=JobState.CANCELED, ended_at=self.clock.now(), reason="canceled before it ran"
            )
        )
        await self._pid1.stop(record.unit)
        return self._current(record.id)

    async def delete(self, id_or_prefix: str) -> JobRecord:
        record = self.resolve(id_or_prefix)
        if not record.state.is_terminal:
            raise JobletError(
                ErrorCode.CONFLICT,
                f"job {record.id} is {record.state}",
                hint="stop it first: rnx job stop " + record.id[:8],
            )
        self.store.delete(record.id)
        self.files.remove(self._paths(record.id))
        logger.info("deleted job %s", record.id, extra={"JOB_ID": record.id})
        return record

    async def delete_all(self, owner: str | None) -> tuple[int, int]:
        """Deletes every ended job (of `owner`, if given); returns (deleted, skipped running)."""
        deleted = skipped = 0
        for record in self.store.list(owner=owner):
            if record.state.is_terminal:
                await self.delete(record.id)
                deleted += 1
            else:
                skipped += 1
        return deleted, skipped

    async def wait(
        self,
        job_id: str,
        *,
        within: float | None = None,
        until: Callable[[JobRecord], bool] = lambda r: r.state.is_terminal,
    ) -> JobRecord:
        """Returns once `until` holds for the job's record (default: it ended), or TimeoutError
        after `within` seconds."""

        async def waiter() -> JobRecord:
            while True:
                event = self._changed.setdefault(job_id, asyncio.Event())
                record = self._current(job_id)
                if until(record):
                    return record
                await event.wait()

        return await asyncio.wait_for(waiter(), within)

    # -- signals from PID 1 ---------------------------------------------------------------

    def on_systemd_event(self, event: JobDone | UnitGone) -> None:
        recorded = end_record.job_of(event.unit)
        if recorded is not None:
            # The job's unit ended and PID 1 ran its end recorder (OnSuccess=/OnFailure=).
            if isinstance(event, JobDone):
                self._recorded.setdefault(recorded, asyncio.Event()).set()
                ended = self.store.get(recorded)
                if ended and not ended.state.is_terminal:
                    self._finish_soon(ended)
            return
        job_id = job_id_of_unit(event.unit)
        record = self.store.get(job_id) if job_id else None
        waiter = self._pending.pop(event.unit, None)
        if waiter and not waiter.done():
            waiter.set_result(event.result if isinstance(event, JobDone) else "gone")
        if record is None or record.state.is_terminal:
            return
        if isinstance(event, JobDone):
            # Type=exec: the start job is done once exec() succeeded. Otherwise the unit failed
            # (its recorder follows) or never ran (a dependency, its network, failed).
            if record.state is JobState.SCHEDULED and event.result == "done":
                self._save(record.evolve(state=JobState.RUNNING, started_at=self.clock.now()))
            elif event.result != "done":
                self._finish_soon(record, start_result=event.result)
            return
        # Unloaded: it ended (its recorder's signal comes too, or came), or a daemon-reload.
        self._finish_soon(record)

    def _finish_soon(self, record: JobRecord, *, start_result: str | None = None) -> None:
        """Finishing asks PID 1 and maybe the kernel's log: keep the bus reader free meanwhile."""
        if record.id in self._finishing_ids:
            return
        self._finishing_ids.add(record.id)
        task = asyncio.get_running_loop().create_task(self._finish(record, start_result))
        self._finishing.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._finishing.discard(task)
            self._finishing_ids.discard(record.id)
            if not task.cancelled() and task.exception() is not None:
                logger.error("finishing job %s failed: %s", record.id, task.exception())

        task.add_done_callback(done)

    async def settle(self) -> None:
        """Wait for the jobs being finished now (their records written): before the bus goes."""
        while self._finishing:
            await asyncio.gather(*self._finishing, return_exceptions=True)

    def _expect(self, unit: str) -> asyncio.Future[str]:
        """Await the result of the next systemd job on `unit`; register before asking for it."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[unit] = future
        return future

    async def _finish(
        self, record: JobRecord, start_result: str | None = None, *, wait: bool = True
    ) -> None:
        """The unit ended, or never started: PID 1's account of it says how (the record its end
        recorder wrote, else PID 1's journal lines about the unit), and on cgroup v1 the
        kernel's log whether a SIGKILL was an OOM kill."""
        active = await self._pid1.active_state(record.unit)
        if active in (*_RUNNING, "activating"):
            # `systemctl daemon-reload` (every package install runs one) makes PID 1 send
            # UnitRemoved for units it re-reads: one still running has not ended.
            logger.debug("%s: a signal while it runs (%s)", record.unit, active)
            return
        paths = self._paths(record.id)
        end = await self._recorded_end(record, paths, wait=wait)
        if end is None:
            end = UnitEnd.from_fields(await self.journal.unit_end(record.unit) or {})
        if (
            not self.host.reports_oom_kills
            and end.maybe_oom_kill
            and await self._kernel_reports_oom_kill(record)
        ):
            end = end.as_oom_kill()
        if record.endpoint is not None:
            # Its network helper is stopped once the job is gone (StopWhenUnneeded=), deleting
            # its link; the job has ended when that is done, not before.
            try:
                await self._pid1.stop(helper_unit(record.id), within=NETWORK_STOP_TIMEOUT_SEC)
            except TimeoutError:
                logger.warning("the network helper of job %s is still stopping", record.id)
        self._recorded.pop(record.id, None)
        current = self.store.get(record.id)
        if current is None or current.state.is_terminal:
            return  # deleted or canceled meanwhile
        if start_result is not None and not end.ran:
            # It never ran: its start failed (systemd says why), or a unit it requires did.
            reason = f"failed to start: {start_result}"
            if current.endpoint is not None:
                reason += (
                    f"; its network could not be set up (journalctl -u {helper_unit(record.id)})"
                )
            self._record_outcome(current, Outcome(JobState.FAILED, None, None, reason))
        elif not end.known:
            reason = "the job's unit ended leaving no record of how"
            self._record_outcome(current, Outcome(JobState.FAILED, None, None, reason))
        else:
            outcome = decide(
                stop_requested=current.stop_requested,
                result=end.result,
                kind=end.kind,
                status=end.status,
                ran=end.ran,
            )
            self._record_outcome(current, outcome, result=end.result)

    async def _recorded_end(
        self, record: JobRecord, paths: JobPaths, *, wait: bool
    ) -> UnitEnd | None:
        """The end recorder's record: waited for (its run follows the unit's end) when the unit's
        removal came first; None if it never comes (the journal is asked instead)."""
        text = self.files.read_text(paths.end_record)
        if text is None and wait:
            done = self._recorded.setdefault(record.id, asyncio.Event())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.record_wait_sec)
            text = self.files.read_text(paths.end_record)
        if text is None:
            return None
        end = end_record.parse_record(text)
        return end if end.known else None

    async def _kernel_reports_oom_kill(self, record: JobRecord) -> bool:
        """cgroup v1: whether the kernel's log reports the job's SIGKILL as an OOM kill."""
        paths = self._paths(record.id)
        unit = kernel_log.helper_unit(record.id)
        try:
            result = await self._pid1.run(
                unit,
                kernel_log.helper_properties(paths.kernel_log, self.config.slice),
                within=KERNEL_LOG_TIMEOUT_SEC,
            )
        except JobletError as exc:
            logger.warning("could not read the kernel's log for %s: %s", record.id, exc.message)
            return False
        text = self.files.take_text(paths.kernel_log) if result == "done" else None
        uids = {user.name: user.uid for user in pool(self.config.jobs)}
        window = kernel_log.Window.of(
            record.started_at or record.created_at,
            record.ended_at or self.clock.now(),
            boot=time.time() - time.monotonic(),
        )
        return kernel_log.reports_oom_kill(
            text or "", record.unit, uids.get(record.user or ""), window
        )

    async def _limit_running(self, record: JobRecord) -> None:
        """Its CPU quota, once its program runs (units/translate.py says why)."""
        props = running_limits(record.spec.limits)
        if props:
            await self._pid1.set_properties(record.unit, props)

    def _record_outcome(
        self,
        record: JobRecord,
        outcome: Outcome,
        *,
        result: str | None = None,
        started: datetime | None = None,
    ) -> None:
        current = self.store.get(record.id)
        if current is None or current.state.is_terminal:
            return  # deleted meanwhile (api-fuzz finding 11): never written back
        final = current.evolve(
            state=outcome.state,
            exit_code=outcome.exit_code,
            signal=outcome.signal,
            result=result,
            reason=outcome.reason,
            ended_at=self.clock.now(),
            started_at=current.started_at or started,
        )
        self._save(final)
        logger.info(
            "job %s %s (exit %s, result %s)",
            record.id,
            outcome.state,
            outcome.exit_code,
            result,
            extra={"JOB_ID": record.id, "UNIT": record.unit},
        )

    # -- start-up -------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Re-attach to running units; give jobs that ended while we were away their true end."""
        live = dict(await self._pid1.list_units("joblet-job-*.service"))
        known: set[str] = set()
        for record in self.store.list(states=frozenset({JobState.SCHEDULED, JobState.RUNNING})):
            known.add(record.unit)
            props = await self._pid1.unit_properties(record.unit)
            active = props.get("ActiveState") if props else None
            if active in _RUNNING or active == "activating":
                current = record
                if record.state is JobState.SCHEDULED and active in _RUNNING:
                    assert props is not None
                    started = _timestamp(props) or self.clock.now()
                    current = record.evolve(state=JobState.RUNNING, started_at=started)
                    self._save(current)
                if active in _RUNNING:
                    await self._limit_running(current)  # in case the agent died before it did
                logger.info("re-attached to running job %s", record.id)
                continue
            # Ended while no agent watched: its recorder ran then, unless it is still at it.
            recorders = [end_record.recorder_unit(record.id, k) for k in end_record.KINDS]
            pending = [await self._pid1.active_state(unit) for unit in recorders]
            if any(state is not None for state in pending):
                self._finish_soon(record)
                continue
            try:
                await self._finish(record, wait=False)
            except JobletError as exc:
                # One job's end that cannot be read now never stops the agent from starting.
                logger.error("could not read how job %s ended: %s", record.id, exc.message)
        for unit in sorted(set(live) - known):
            logger.warning("unit %s is not a job this agent knows; leaving it alone", unit)

    async def roots_in_use(self) -> set[str]:
        """The RootDirectory of every loaded job unit, whoever started it: skeletons to keep."""
        roots = {str(self.root)}
        for unit, _state in await self._pid1.list_units(f"{UNIT_PREFIX}*.service"):
            props = await self._pid1.unit_properties(unit)
            if props and props.get("RootDirectory"):
                roots.add(str(props["RootDirectory"]))
        return roots

    # -- helpers --------------------------------------------------------------------------

    def _with_runtime(
        self, spec: JobSpec
    ) -> tuple[JobSpec, InstalledRuntime | None, tuple[str, ...]]:
        """The runtime spec.runtime names, resolved among the installed ones and bound."""
        if spec.runtime is None:
            return spec, None, ()
        runtime = resolve(
            parse_reference(spec.runtime),
            self.runtimes.installed() if self.runtimes else [],
            self.runtimes.arch if self.runtimes else "",
        )
        bound, warnings = bind_runtime(spec, runtime)
        return bound, runtime, tuple(warnings)

    async def _unit_properties(
        self,
        job_id: str,
        spec: JobSpec,
        paths: JobPaths,
        user: JobUser,
        *,
        runtime: InstalledRuntime | None,
        network: JobNetwork,
        work_tree: Path | None,
    ) -> Sequence[Property]:
        """Its program found in its root (its /work: `work_tree`, the upload's, if any), its
        volumes mounted, and the translation of it all."""
        mounts = runtime_mounts(runtime, BASE_READ_ONLY) if runtime else None
        # Before the job runs, its /work holds the upload and nothing else.
        seen = dataclasses.replace(paths, work=PurePosixPath(work_tree)) if work_tree else paths
        command = resolve_command(
            spec.command, job_environment(job_id, spec, runtime)["PATH"], seen, mounts
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
            volumes=await self.volumes.bindings(spec.volumes),
            network=network,
            runtime=runtime,
        )

    async def _create_missing(
        self, spec: JobSpec, owner: str, volumes: bool, networks: bool
    ) -> tuple[str, ...]:
        made = await self.volumes.create_missing(spec.volumes, owner) if volumes else ()
        if networks and self.networks is not None:
            made += await self.networks.create_missing(spec, owner)
        return made

    def _take_upload(
        self, spec: JobSpec, request: Mapping[str, Any], owner: str
    ) -> tuple[JobSpec, Path | None]:
        """The job's upload, taken over (its tree), and /work sized to hold it."""
        if spec.upload is None:
            return spec, None
        tree, received = self.uploads.take(spec.upload, owner)
        try:
            return _room_for_upload(spec, received, request, self.config.jobs.max_work_bytes), tree
        except JobletError:
            self.uploads.discard(spec.upload)  # taken: refused with the job
            raise

    def _free_user(self) -> JobUser:
        """A pool user no live job has: jobs never share a UID, so they cannot see, signal or
        ptrace each other. A user chosen is claimed until the job's record holds it: the submit
        awaits (the /work image, the network) between choosing and recording."""
        live = {r.user for r in self.store.list(states=_LIVE)} | self._claimed
        for slot in range(self.config.jobs.max_running):
            user = pool_user(self.config.jobs, slot)
            if user.name not in live:
                self._claimed.add(user.name)
                return user
        raise JobletError(
            ErrorCode.CONFLICT,
            f"{self.config.jobs.max_running} jobs are running, the most this agent allows",
            hint="wait for jobs to end, or raise jobs.max_running in joblet.yml",
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

    def _paths(self, job_id: str) -> JobPaths:
        return JobPaths.for_job(PurePosixPath(self.config.jobs_dir), job_id)

    def _current(self, job_id: str) -> JobRecord:
        record = self.store.get(job_id)
        if record is None:
            raise JobletError(ErrorCode.NOT_FOUND, f"job {job_id} does not exist")
        return record

    def _save(self, record: JobRecord) -> None:
        self.store.put(record)
        if record.state.is_terminal and self.networks is not None:
            self.networks.job_ended(record)  # its address and hostname are free again
        event = self._changed.pop(record.id, None)
        if event:
            event.set()


def _timestamp(props: Mapping[str, Any]) -> datetime | None:
    usec = props.get("ExecMainStartTimestamp")
    if not usec:
        return None
    return datetime.fromtimestamp(usec / 1_000_000, UTC)


def _write_private(path: Path, text: str) -> None:
    """Create a root-only file: mode 0600 from the first byte, never widened afterwards."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _forget_secrets(paths: JobPaths) -> None:
    """The job's process has its environment now; the values need not stay on disk."""
    Path(paths.secrets).unlink(missing_ok=True)
