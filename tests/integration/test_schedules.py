"""Jobs scheduled for a time, against the real systemd: a transient timer of PID 1's fires them
on time, and nothing between submit and firing loses or doubles one: an agent restart, a
daemon-reload, PID 1 losing its transient units (as a reboot does; the reboot itself is
test_schedules_reboot.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from rnx.client import Client, Job
from tests.integration.conftest import rnx, sh, wait_state

# The acceptance: a job scheduled 3 s ahead starts within 1 s of its time.
ON_TIME_SEC = 1.0


def timers() -> str:
    return sh("systemctl", "list-timers", "--all", "--no-pager", "joblet-sched-*")


def ran_once(client: Client, job: Job) -> Job:
    """It ended COMPLETED, having printed its one line once."""
    final = wait_state(client, job.id, "COMPLETED", "FAILED", "CANCELED", timeout=60)
    assert final.state == "COMPLETED", final
    assert list(client.logs(job.id, follow=False)) == ["fired"]
    return final


def lateness(job: Job) -> float:
    assert job.started_at is not None and job.scheduled_for is not None
    return (job.started_at - job.scheduled_for).total_seconds()


def test_a_job_scheduled_3s_ahead_starts_on_time(client: Client) -> None:
    job = client.run(["echo", "fired"], schedule="3s")
    assert job.state == "SCHEDULED"
    assert job.scheduled_for is not None
    ahead = (job.scheduled_for - datetime.now(UTC)).total_seconds()
    assert 1 < ahead <= 3, ahead
    assert f"joblet-sched-{job.id}.timer" in timers()
    status = rnx("job", "status", job.id)
    assert "Scheduled for" in status.stdout and job.scheduled_for.isoformat() in status.stdout
    final = ran_once(client, job)
    assert 0 <= lateness(final) < ON_TIME_SEC, final
    assert final.warnings == ()
    assert f"joblet-sched-{job.id}.timer" not in timers()  # fired: it went


def test_an_agent_restart_between_submit_and_firing_loses_nothing(client: Client) -> None:
    job = client.run(["echo", "fired"], schedule="3s")
    sh("systemctl", "restart", "joblet.service")
    final = ran_once(client, job)
    assert lateness(final) >= 0


def test_daemon_reload_between_submit_and_firing_loses_nothing(client: Client) -> None:
    job = client.run(["echo", "fired"], schedule="3s")
    sh("systemctl", "daemon-reload")
    assert f"joblet-sched-{job.id}.timer" in timers()
    final = ran_once(client, job)
    assert 0 <= lateness(final) < ON_TIME_SEC, final


def test_timers_pid1_lost_are_made_again_and_a_missed_time_runs_once(client: Client) -> None:
    """As after a reboot: PID 1 has none of the timers (here stopped while no agent runs); at
    its start the agent makes the timer of a job still to come again, and starts once a job
    whose time passed meanwhile, saying so."""
    missed = client.run(["echo", "fired"], schedule="2s")
    coming = client.run(["echo", "fired"], schedule="8s")
    sh("systemctl", "stop", "joblet.socket", "joblet.service")
    try:
        for job in (missed, coming):
            sh("systemctl", "stop", f"joblet-sched-{job.id}.timer")
        listed = timers()  # the job's own: other modules' schedules may have timers
        assert not any(f"joblet-sched-{job.id}" in listed for job in (missed, coming))
        assert missed.scheduled_for is not None
        wait = (missed.scheduled_for - datetime.now(UTC)).total_seconds()
        time.sleep(max(0.0, wait) + 0.5)  # its time passes with no agent and no timer
    finally:
        sh("systemctl", "start", "joblet.socket")
    late = ran_once(client, missed)
    assert late.warnings == (
        f"its start time {missed.scheduled_for.isoformat(timespec='seconds')} passed while no "
        "agent ran: it started when the agent did",
    )
    assert f"joblet-sched-{coming.id}.timer" in timers()  # made again by the agent's start
    final = ran_once(client, coming)
    assert 0 <= lateness(final) < ON_TIME_SEC, final


def test_cancel_of_a_scheduled_job(client: Client) -> None:
    job = client.run(["echo", "fired"], schedule="1h")
    canceled = client.cancel(job.id)
    assert (canceled.state, canceled.started_at) == ("CANCELED", None)
    deadline = time.monotonic() + 10
    while f"joblet-sched-{job.id}.timer" in timers():
        assert time.monotonic() < deadline, timers()
        time.sleep(0.1)


def test_bad_one_shot_times_are_refused_naming_them() -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for when, message in (
        ("-5m", "schedule: '-5m' is not valid; a negative duration"),
        (past, "is in the past"),
        ("2026-02-30 10:00", "no such date or time"),
    ):
        result = rnx("job", "run", "--schedule", when, "true")
        assert result.returncode == 2, (when, result.stderr)
        assert message in result.stderr, (when, result.stderr)
