"""The unit tier's wiring: a JobService on a fake for every port, built the way daemon.wire builds
the real one, and job requests parsed as the API parses them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from joblet_agent.adapters.runtime_store import RuntimeDirectory
from joblet_agent.adapters.upload_staging import StagedUploads
from joblet_agent.adapters.volume_files import VolumeFiles
from joblet_agent.api.app import make_app
from joblet_agent.domain.config import Access, AgentConfig
from joblet_agent.domain.host import HostInfo
from joblet_agent.domain.job import JobRecord
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.ports import Calendar, Clock, JobFiles, JobStore, Journal, RuntimeCatalog
from joblet_agent.services.job.service import JobService
from joblet_agent.services.network import NetworkService
from joblet_agent.services.runtime import RuntimeService
from joblet_agent.services.schedule import ScheduleService
from joblet_agent.services.upload import UploadService
from joblet_agent.services.volume import VolumeService
from tests.unit.fakes import (
    FakeCalendar,
    FakeClock,
    FakeGroups,
    FakeJobFiles,
    FakeJobStore,
    FakeJournal,
    FakeScheduleStore,
)
from tests.unit.hosts import HYBRID_HOST


def upload_service(config: AgentConfig, clock: Clock | None = None) -> UploadService:
    """Uploads staged for real, in the test's state directory (extraction is what they test)."""
    return UploadService(config, clock or FakeClock(), StagedUploads(config.state_dir / "uploads"))


def volume_service(
    config: AgentConfig, host: HostInfo, store: JobStore, clock: Clock | None = None
) -> VolumeService:
    return VolumeService(
        config,
        host,
        store,
        clock or FakeClock(),
        files=VolumeFiles(config.state_dir / "volumes"),
        groups=FakeGroups(),
    )


def job_service(
    config: AgentConfig,
    host: HostInfo = HYBRID_HOST,
    *,
    store: JobStore | None = None,
    journal: Journal | None = None,
    files: JobFiles | None = None,
    clock: Clock | None = None,
    uploads: UploadService | None = None,
    networks: NetworkService | None = None,
    runtimes: RuntimeCatalog | None = None,
    calendar: Calendar | None = None,
) -> JobService:
    store = store or FakeJobStore()
    clock = clock or FakeClock()
    return JobService(
        config,
        host,
        store,
        journal or FakeJournal(),
        files=files or FakeJobFiles(),
        clock=clock,
        uploads=uploads or upload_service(config, clock),
        volumes=volume_service(config, host, store, clock),
        networks=networks,
        runtimes=runtimes,
        calendar=calendar or FakeCalendar(),
        root=PurePosixPath(config.state_dir / "roots" / "test"),
    )


async def submit(
    service: JobService, body: Mapping[str, Any], owner: str = "a", **options: bool
) -> JobRecord:
    """A job request as the API hands it to the engine: parsed first."""
    parsed = parse_job_request(body, service.config.jobs, service.host)
    return await service.submit(parsed, owner, **options)


def api_app(service: JobService, access: Access) -> web.Application:
    """The API on the service, with the runtimes of its config's runtimes_dir (as the agent)."""
    runtimes = RuntimeDirectory(service.config.runtimes_dir)
    schedules = schedule_service(service)
    return make_app(service, access, RuntimeService(runtimes, service), schedules)


def schedule_service(jobs: JobService) -> ScheduleService:
    """Schedules on the jobs' service, with its calendar (a FakeCalendar) and clock."""
    calendar = jobs.intake.calendar
    assert calendar is not None
    schedules = ScheduleService(FakeScheduleStore(), jobs, calendar=calendar, clock=jobs.clock)
    if jobs.lifecycle.systemd is not None:
        schedules.attach(jobs.lifecycle.systemd)
    return schedules
