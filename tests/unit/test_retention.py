"""Ended jobs' files go after jobs.work_retention; their records stay (retention.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.domain.job import JobState
from tests.unit.fakes import FakeClock, FakeSystemd
from tests.unit.wiring import job_service, submit


def test_an_ended_jobs_files_go_after_the_retention_and_its_record_stays(tmp_path: Path) -> None:
    config = AgentConfig(state_dir=tmp_path / "state", jobs=JobPolicy(work_retention_sec=3600))
    clock = FakeClock()
    service = job_service(config, store=SqliteJobStore(config.database), clock=clock)
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)

    async def scenario() -> None:
        ended = await submit(service, {"command": "true"})
        running = await submit(service, {"command": "true"})
        systemd.end(ended.unit, result="success", code="exited", status="0")
        await service.wait(ended.id, within=1)
        directory = Path(config.jobs_dir) / ended.id
        assert directory.is_dir()
        clock.moment += timedelta(minutes=59)
        assert service.retention.sweep() == 0  # not yet
        assert directory.is_dir()
        clock.moment += timedelta(minutes=2)
        assert service.retention.sweep() == 1
        assert not directory.exists()
        record = service.resolve(ended.id)
        assert record.state is JobState.COMPLETED and record.files_reclaimed_at == clock.moment
        assert service.retention.sweep() == 0  # once
        assert (Path(config.jobs_dir) / running.id).is_dir()  # a live job's files are its own
        await service.delete(ended.id)  # the record goes when deleted, as before

    asyncio.run(scenario())


def test_no_retention_keeps_the_files_and_the_sweep_is_bounded(tmp_path: Path) -> None:
    policy = JobPolicy(work_retention_sec=None, upload_retention_sec=60)
    config = AgentConfig(state_dir=tmp_path / "state", jobs=policy)
    service = job_service(config)
    assert service.retention.sweep() == 0
    assert service.retention.period_sec == 15
    short = dataclasses.replace(config, jobs=JobPolicy(work_retention_sec=1))
    assert job_service(short).retention.period_sec == 0.5
