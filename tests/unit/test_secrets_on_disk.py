"""A job's secret values stay on disk (root-only, for PID 1 to read at exec) only while the job
has not started: they go once its program runs, once it ends however it ends, and at the agent's
start for every job that started or ended while no agent (or a crashed one) watched (review L11)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.domain.config import AgentConfig, JobPolicy
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.ports import JobDone
from joblet_agent.services.job import start
from joblet_agent.services.job.service import JobService
from joblet_agent.units.properties import Property
from tests.unit.fakes import FakeClock, FakeSystemd
from tests.unit.wiring import job_service, submit

SECRET = {"command": "true", "secret_env": {"TOKEN": "s3cret"}}


class SlowSystemd(FakeSystemd):
    """PID 1 whose start jobs end only when the test says (a start taking minutes)."""

    async def start_transient(
        self,
        unit: str,
        properties: Sequence[Property],
        *,
        aux: Sequence[tuple[str, Sequence[Property]]] = (),
    ) -> None:
        emit, self.emit = self.emit, lambda event: None
        try:
            await super().start_transient(unit, properties, aux=aux)
        finally:
            self.emit = emit
        self.units[unit]["ActiveState"] = "activating"


def engine(
    tmp_path: Path, systemd: type[FakeSystemd] = FakeSystemd
) -> tuple[JobService, FakeSystemd]:
    config = AgentConfig(state_dir=tmp_path / "state", jobs=JobPolicy(max_running=1))
    service = job_service(config, store=SqliteJobStore(config.database), clock=FakeClock())
    service.lifecycle.record_wait_sec = 0  # no end recorder runs here
    pid1 = systemd(service.on_systemd_event)
    service.attach(pid1)
    return service, pid1


def secrets_of(service: JobService, record: JobRecord) -> Path:
    return Path(service.config.jobs_dir) / record.id / "secret.env"


async def settled() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.mark.parametrize("result", ["done", "failed"])
def test_a_start_slower_than_the_agent_waits_leaves_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: str
) -> None:
    monkeypatch.setattr(start, "START_TIMEOUT_SEC", 0.01)
    service, pid1 = engine(tmp_path, SlowSystemd)

    async def scenario() -> None:
        job = await submit(service, SECRET)
        assert job.state is JobState.SCHEDULED  # its start still pending
        assert secrets_of(service, job).exists()  # PID 1 has not read them yet
        if result == "done":
            pid1.units[job.unit]["ActiveState"] = "active"
        else:
            del pid1.units[job.unit]
        service.on_systemd_event(JobDone(job.unit, result))
        await service.lifecycle.settle()
        await settled()
        assert service.resolve(job.id).state is (
            JobState.RUNNING if result == "done" else JobState.FAILED
        )
        assert not secrets_of(service, job).exists()

    asyncio.run(scenario())


def test_the_agents_start_removes_secrets_of_started_and_ended_jobs(tmp_path: Path) -> None:
    """As a crash between a job's start and the removal of its secrets leaves them: the next
    agent removes them; those of jobs still waiting (queued, or for their time) stay."""
    service, _ = engine(tmp_path)

    async def before() -> list[JobRecord]:
        running = await submit(service, SECRET)
        queued = await submit(service, SECRET)
        later = await submit(service, {**SECRET, "schedule": "1h"})
        ended = await submit(service, SECRET)  # queued, then canceled
        await service.cancel(ended.id)
        return [running, queued, later, ended]

    running, queued, later, ended = asyncio.run(before())
    assert service.resolve(running.id).state is JobState.RUNNING
    for job in (running, ended):
        secrets_of(service, job).write_text('TOKEN="s3cret"\n')  # left by a crash
    orphan = Path(service.config.jobs_dir) / "0f0f0f0f-dead-4bad-8bad-0123456789ab"
    orphan.mkdir()
    (orphan / "secret.env").write_text('TOKEN="s3cret"\n')  # written, then a crash: no record
    again, pid1 = engine(tmp_path)
    pid1.units[running.unit] = {"ActiveState": "active", "RootDirectory": "/"}

    async def after() -> None:
        await again.reconcile()
        await settled()

    asyncio.run(after())
    assert not secrets_of(service, running).exists()
    assert not secrets_of(service, ended).exists()
    assert not (orphan / "secret.env").exists()
    assert secrets_of(service, queued).exists()
    assert secrets_of(service, later).exists()
