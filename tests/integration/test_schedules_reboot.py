"""What a reboot keeps of a job scheduled for a time: `make integration` runs the first test
last before it reboots the sandbox (its PID 1 halted: every transient unit, the job's timer
included, is gone; the disk stays), then the second. The job fires once: by its timer, made
again at the agent's start, if its time had not come by then; else at the agent's start,
saying its time passed while no agent ran."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from rnx.client import Client
from tests.integration.conftest import sh, wait_state

NAME = "reboot-timer"
ON_TIME_SEC = 1.0  # the acceptance's bound (test_schedules.py)


@pytest.mark.before_reboot
def test_before_reboot(client: Client) -> None:
    for job in client.list(state="SCHEDULED"):
        if job.spec.name == NAME:  # left by an earlier run that never rebooted
            client.cancel(job.id)
    # Far enough ahead for the reboot and the agent's start (about 10 s) to come first.
    job = client.run(["echo", "fired"], name=NAME, schedule="15s")
    assert job.state == "SCHEDULED"


@pytest.mark.after_reboot
def test_after_reboot(client: Client) -> None:
    job = client.get(NAME)  # the agent starts with this call: its timer is made again
    assert job.scheduled_for is not None
    timers = sh("systemctl", "list-timers", "--all", "--no-pager", "joblet-sched-*")
    if job.state == "SCHEDULED":
        assert f"joblet-sched-{job.id}.timer" in timers
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=90)
    assert final.state == "COMPLETED", final
    due = job.scheduled_for
    assert list(client.logs(job.id, follow=False)) == ["fired"]  # once
    assert final.started_at is not None and final.started_at >= due
    late = (final.started_at - due).total_seconds()
    if final.warnings:  # its time passed before the agent was back
        assert "passed while no agent ran: it started when the agent did" in final.warnings[0]
        assert final.queued_at is not None and final.queued_at > due
    else:  # its timer, made again, fired it
        assert late < ON_TIME_SEC, final
    assert datetime.now(UTC) > due
