"""What joblet.yml gives a job that asks for nothing (security-audit M4): a timeout and a memory
limit, recorded and shown at the start; and what it takes back from an ended one (M5): its
/work image and files, after a retention time, while its record stays.

This module's agent runs with short figures (DEFAULT_TIMEOUT, RETENTION) a test can wait for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from tests.integration.configured_agent import configured_agent
from tests.integration.conftest import JOBS_DIR, rnx

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 2  # seconds: jobs.default_timeout of this module's agent
DEFAULT_MEMORY = 96 * MIB
RETENTION = 2  # seconds: jobs.work_retention and jobs.upload_retention
UPLOADS_DIR = Path("/var/lib/joblet/uploads")


@pytest.fixture(scope="module", autouse=True)
def short_defaults() -> Iterator[None]:
    text = (
        f"jobs:\n  default_timeout: {DEFAULT_TIMEOUT}s\n  default_memory: {DEFAULT_MEMORY}\n"
        f"  work_retention: {RETENTION}s\n  upload_retention: {RETENTION}s\n"
    )
    with configured_agent(text):
        yield


def test_a_job_without_a_timeout_ends_at_the_default(client: Client) -> None:
    job = client.run(["sleep", "60"])
    assert job.spec.limits.timeout_sec == DEFAULT_TIMEOUT
    final = client.wait(job.id)
    assert (final.state, final.exit_code) == ("TIMEOUT", 124), final


def test_the_defaults_are_shown_at_the_start_and_asked_limits_win(client: Client) -> None:
    shown = rnx("job", "run", "--", "true")
    assert shown.returncode == 0, shown.stderr
    assert f"memory {DEFAULT_MEMORY // MIB}.0MiB" in shown.stderr, shown.stderr
    assert f"timeout {DEFAULT_TIMEOUT}s" in shown.stderr, shown.stderr
    # More than the defaults when asked for: 128 MiB held past a 96 MiB default, for 1 s.
    hold = "b = b'x' * (128 * 1024 * 1024); import time; time.sleep(1); print('held')"
    job = client.run(["python3", "-c", hold], memory_bytes="192M", timeout_sec=30)
    final = client.wait(job.id)
    assert final.state == "COMPLETED", final
    assert list(client.logs(job.id, follow=False)) == ["held"]


def gone(path: Path, *, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while path.exists():
        assert time.monotonic() < deadline, f"{path} is still there after {within} s"
        time.sleep(0.1)


def test_an_ended_jobs_files_are_reclaimed_and_its_record_stays(client: Client) -> None:
    job = client.run(["sh", "-c", "head -c 4000000 /dev/urandom > /work/data && echo wrote"])
    final = client.wait(job.id)
    assert final.state == "COMPLETED" and final.ended_at is not None
    gone(JOBS_DIR / job.id)  # its /work image (4 MB written) and every file of its directory
    record = client.get(job.id)
    assert record.state == "COMPLETED" and record.exit_code == 0
    assert record.files_reclaimed_at is not None
    assert (record.files_reclaimed_at - final.ended_at).total_seconds() >= RETENTION
    assert list(client.logs(job.id, follow=False)) == ["wrote"]  # its journal is not its files
    status = rnx("job", "status", job.id)
    assert status.returncode == 0 and "reclaimed" in status.stdout, status.stdout


def test_an_upload_no_job_takes_goes_on_its_own(client: Client, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 100_000)
    upload = client.upload([str(data)])
    staged = UPLOADS_DIR / upload.id
    assert staged.is_dir()
    gone(staged)  # no other upload announced meanwhile: the sweep took it
