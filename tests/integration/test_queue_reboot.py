"""What a reboot keeps of the admission queue: `make integration` runs the first test last
before it reboots the sandbox, then the second. One owner (a certificate) with a quota of one
running job has a job holding it and three waiting; after the reboot (PID 1 halted: the holding
job's unit died with it) the three start, once each, in the queue's order: priority first, then
first come."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from joblet_agent.pki.store import Pki
from rnx.client import Client
from tests.integration.configured_agent import CONFIG, restart_agent
from tests.integration.conftest import wait_state

PKI_DIR = Path("/etc/joblet/pki")
OWNER = "queue-reboot"
SAVED = CONFIG.with_name("joblet.yml.before-queue-reboot")
QUOTA = f"quotas:\n  owners:\n    {OWNER}:\n      max_running: 1\n"
NAMES = ("qr-holder", "qr-first", "qr-second", "qr-urgent")


@pytest.fixture
def no_units_left_behind() -> Iterator[None]:
    """This module's own (it overrides the autouse guard of conftest.py): the holding job is
    left running on purpose, for the reboot to end."""
    yield


def owner_client(tmp: Path) -> Client:
    """The owner's client (a certificate of the same name, issued again after the reboot)."""
    config = Pki(PKI_DIR).issue_client(
        OWNER, "developer", out_dir=tmp / "c", address="localhost:50051"
    )
    return Client(config=str(config))


@pytest.mark.before_reboot
def test_before_reboot(tmp_path: Path) -> None:
    if not (PKI_DIR / "ca.crt").exists():
        Pki(PKI_DIR).init()  # before the agent's start: it serves TCP with the PKI it found
    if not SAVED.exists():
        SAVED.write_text(CONFIG.read_text() if CONFIG.exists() else "")
    CONFIG.write_text(SAVED.read_text() + QUOTA)
    restart_agent()
    with owner_client(tmp_path) as client:
        for job in client.list():
            if job.spec.name in NAMES and job.state.ended:  # an earlier run's
                client.delete(job.id)
        holder = client.run(["sleep", "600"], name="qr-holder")
        first = client.run(["echo", "first"], name="qr-first")
        second = client.run(["echo", "second"], name="qr-second")
        urgent = client.run(["echo", "urgent"], name="qr-urgent", priority=9)
        assert holder.state == "RUNNING"
        assert [client.get(j.id).queue_position for j in (urgent, first, second)] == [1, 2, 3]


@pytest.mark.after_reboot
def test_after_reboot(tmp_path: Path) -> None:
    try:
        with owner_client(tmp_path) as client:
            holder = wait_state(client, "qr-holder", "FAILED", "COMPLETED", "STOPPED")
            assert holder.started_at is not None  # it ran before the reboot, and not again
            ran = []
            for name in ("qr-urgent", "qr-first", "qr-second"):
                job = wait_state(client, name, "COMPLETED", "FAILED", timeout=60)
                assert job.state == "COMPLETED", job
                assert list(client.logs(job.id, follow=False)) == [name.removeprefix("qr-")]
                ran.append(job.started_at)
            assert None not in ran
            assert ran == sorted(ran)  # type: ignore[type-var]
    finally:
        if SAVED.exists():
            saved = SAVED.read_text()
            if saved:
                CONFIG.write_text(saved)
            else:
                CONFIG.unlink()  # there was none
            SAVED.unlink()
            restart_agent()
