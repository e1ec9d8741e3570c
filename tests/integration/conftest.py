"""Integration tests talk to the real agent, systemd, journald and D-Bus inside the sandbox.

They never skip: outside the sandbox they fail, saying how to run them (make integration).
An autouse guard fails any test that leaves a job unit running.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client, Job

JOBS_DIR = Path("/var/lib/joblet/jobs")


def sh(*args: str, check: bool = True) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=check).stdout


def active_job_units() -> set[str]:
    out = sh(
        "systemctl",
        "list-units",
        "--no-legend",
        "--plain",
        "--state=active,activating,deactivating",
        "joblet-job-*.service",
    )
    return {line.split()[0] for line in out.splitlines() if line.strip()}


@pytest.fixture(scope="session", autouse=True)
def inside_sandbox() -> None:
    if Path("/proc/1/comm").read_text().strip() != "systemd":
        pytest.fail(
            "integration tests need a real systemd as PID 1: run `make integration` "
            "(they run inside tests/sandbox/sandbox)",
            pytrace=False,
        )
    state = sh("systemctl", "is-active", "joblet.socket", check=False).strip()
    if state != "active":
        pytest.fail(
            f"joblet.socket is {state!r}: run `tests/sandbox/sandbox install`", pytrace=False
        )


@pytest.fixture(autouse=True)
def no_units_left_behind() -> Iterator[None]:
    """Fails a test that leaves job units running."""
    before = active_job_units()
    yield
    deadline = time.monotonic() + 15
    left = active_job_units() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = active_job_units() - before
    if left:
        for unit in left:
            sh("systemctl", "kill", "--signal=KILL", unit, check=False)
        pytest.fail(f"test left job units running: {sorted(left)}")


@pytest.fixture
def client() -> Iterator[Client]:
    with Client() as c:
        yield c


def unit_property(unit: str, name: str) -> str:
    return sh("systemctl", "show", "-P", name, unit).strip()


def wait_state(client: Client, job_id: str, *states: str, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(job_id)
        if job.state in states:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job.state}, expected one of {states}")
        time.sleep(0.05)


def rnx(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rnx", *args], capture_output=True, text=True, input=stdin, timeout=120, check=False
    )


def journal_messages(unit: str) -> list[str]:
    out = sh(
        "journalctl", "--no-pager", "-o", "json", "-u", unit, "--output-fields=MESSAGE", check=False
    )
    return [json.loads(line).get("MESSAGE", "") for line in out.splitlines()]
