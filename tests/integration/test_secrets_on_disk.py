"""A job's secret values are on disk (root-only, `secret.env` in its directory, for PID 1 to read
at exec) only while the job waits to start; nothing leaves them behind (review L11): not a start,
a failed start, a cancel while it waits, nor an agent that died mid-start (the next one removes
them). One job at a time (admission.max_running 1), so jobs queue behind a blocker."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client, Job
from tests.integration.configured_agent import configured_agent, restart_agent
from tests.integration.conftest import rnx, sh, wait_state

JOBS = Path("/var/lib/joblet/jobs")
SECRET = {"TOKEN": "s3cret-value"}


@pytest.fixture(scope="module")
def one_at_a_time() -> Iterator[None]:
    with configured_agent("admission:\n  max_running: 1\n"):
        yield


def secrets_of(job: Job) -> Path:
    return JOBS / job.id / "secret.env"


def left_behind() -> list[str]:
    """Every secret.env under the jobs' directories."""
    return sorted(str(p) for p in JOBS.glob("*/secret.env"))


def blocker(client: Client) -> Job:
    job = client.run(["sleep", "120"])
    assert wait_state(client, job.id, "RUNNING").state == "RUNNING"
    return job


def test_a_started_job_had_its_secrets_and_left_none(client: Client, one_at_a_time: None) -> None:
    job = client.run(["sh", "-c", 'echo "$TOKEN"; exec sleep 120'], secret_env=SECRET)
    assert wait_state(client, job.id, "RUNNING").state == "RUNNING"
    assert not secrets_of(job).exists()
    client.stop(job.id)
    assert list(client.logs(job.id, follow=False)) == ["s3cret-value"]


def test_canceled_while_queued_or_scheduled_leaves_none(
    client: Client, one_at_a_time: None
) -> None:
    first = blocker(client)
    try:
        queued = client.run(["true"], secret_env=SECRET)
        later = client.run(["true"], secret_env=SECRET, schedule="1h")
        assert (queued.state, later.state) == ("QUEUED", "SCHEDULED")
        assert secrets_of(queued).exists() and secrets_of(later).exists()  # they wait
        client.cancel(queued.id)
        client.cancel(later.id)
        assert not secrets_of(queued).exists()
        assert not secrets_of(later).exists()
    finally:
        client.stop(first.id)


def test_a_queued_job_that_failed_to_start_left_none(client: Client, one_at_a_time: None) -> None:
    """Its volume cannot be mounted when its turn comes (its image lost its superblock)."""
    name = f"secrets-{uuid.uuid4().hex[:6]}"
    assert rnx("volume", "create", name, "--size=16M").returncode == 0
    try:
        first = blocker(client)
        job = client.run(["true"], secret_env=SECRET, volumes=[name])
        assert job.state == "QUEUED"
        unit = sh(
            "systemd-escape", "--path", "--suffix=mount", f"/var/lib/joblet/volumes/{name}/data"
        )
        sh("systemctl", "stop", unit.strip())
        with open(f"/var/lib/joblet/volumes/{name}/volume.img", "r+b") as image:
            image.seek(1024)
            image.write(bytes(4096))
        client.stop(first.id)
        failed = wait_state(client, job.id, "FAILED", "COMPLETED", timeout=60)
        assert failed.state == "FAILED" and "failed to start" in (failed.reason or ""), failed
        assert not secrets_of(job).exists()
    finally:
        assert rnx("volume", "remove", name).returncode == 0


def test_the_next_agent_removes_what_a_crash_mid_start_left(
    client: Client, one_at_a_time: None
) -> None:
    """An agent killed between a job's start and the removal of its secrets leaves them (made
    here by writing them back): the next agent removes them, and keeps those of jobs that
    still wait. So does a directory with secrets and no record (a crash at submit)."""
    running = client.run(["sleep", "120"], secret_env=SECRET)
    assert wait_state(client, running.id, "RUNNING").state == "RUNNING"
    queued = client.run(["true"], secret_env=SECRET)
    ended = client.run(["true"], secret_env=SECRET, schedule="1h")
    client.cancel(ended.id)
    orphan = JOBS / str(uuid.uuid4())  # written at submit, then a crash: no record
    try:
        orphan.mkdir(mode=0o700)
        for path in (secrets_of(running), secrets_of(ended), orphan / "secret.env"):
            path.write_text('TOKEN="s3cret-value"\n')
            path.chmod(0o600)
        sh("systemctl", "kill", "--signal=KILL", "joblet.service")
        restart_agent()
        assert left_behind() == [str(secrets_of(queued))]
    finally:
        client.stop(running.id)
        shutil.rmtree(orphan, ignore_errors=True)
    assert wait_state(client, queued.id, "COMPLETED", "FAILED").state == "COMPLETED"
    assert left_behind() == []
