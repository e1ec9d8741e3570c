"""Recurring schedules against the real systemd: a calendar expression on PID 1's timer, each
firing a job of its own with its own logs; pause, resume, delete; a firing missed while PID 1
had lost the timer (as after a reboot); calendar expressions systemd refuses, with its reason."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from rnx.client import Client, Job, Schedule
from rnx.errors import RnxError
from tests.integration.conftest import rnx, sh

EVERY_5S = "*:*:0/5"


def timers() -> str:
    return sh("systemctl", "list-timers", "--all", "--no-pager", "joblet-sched-*")


def ended_runs(client: Client, schedule: str) -> list[Job]:
    return [j for j in client.list(schedule=schedule) if j.state.ended]


def wait_runs(client: Client, schedule: str, count: int, *, until: float) -> list[Job]:
    """Its ended runs once there are `count`; fails at the monotonic time `until`."""
    while True:
        runs = ended_runs(client, schedule)
        if len(runs) >= count:
            return runs
        assert time.monotonic() < until, f"{len(runs)} runs of {schedule}, not {count}"
        time.sleep(0.2)


@pytest.fixture
def every_5s(client: Client) -> Iterator[Schedule]:
    made = rnx(
        "job",
        "run",
        "--schedule",
        EVERY_5S,
        "--name",
        "every5",
        "--",
        "sh",
        "-c",
        "echo run $JOB_ID",
    )
    assert made.returncode == 0, made.stderr
    assert "Schedule every5 ACTIVE: *-*-* *:*:00/5" in made.stderr, made.stderr
    schedule = client.schedule("every5")
    assert made.stdout.strip() == schedule.id
    yield schedule
    try:
        client.delete_schedule(schedule.id)
    except RnxError as exc:
        assert exc.status == 404  # the test deleted it


def test_every_5s_fires_3_times_in_20s_pause_resume_delete(
    client: Client, every_5s: Schedule
) -> None:
    start = time.monotonic()
    assert every_5s.timer in timers()
    runs = wait_runs(client, "every5", 3, until=start + 20)  # the acceptance: 3 in 20 s
    for run in runs:
        assert (run.state, run.schedule, run.spec.name) == ("COMPLETED", every_5s.id, None)
        assert list(client.logs(run.id, follow=False)) == [f"run {run.id}"]
    assert len({run.id for run in runs}) == len({run.scheduled_for for run in runs}) == len(runs)
    listed = rnx("job", "list", "--schedule", "every5")
    assert all(run.id[:8] in listed.stdout for run in runs), listed.stdout

    paused = client.pause_schedule("every5")
    assert (paused.state, paused.next_elapse) == ("PAUSED", None)
    assert every_5s.timer not in timers()  # nothing left to fire
    made = len(client.list(schedule="every5"))
    time.sleep(6)  # a whole period: a firing would have come
    assert len(client.list(schedule="every5")) == made

    resumed = client.resume_schedule("every5")
    assert resumed.state == "ACTIVE" and every_5s.timer in timers()
    wait_runs(client, "every5", len(ended_runs(client, "every5")) + 1, until=time.monotonic() + 10)

    deleted = client.delete_schedule("every5")
    assert deleted.deleted == every_5s.id
    assert every_5s.timer not in timers()
    assert len(client.list(schedule=every_5s.id)) >= 4  # past runs stay jobs


def test_a_firing_missed_while_pid1_lost_the_timer_runs_once(client: Client) -> None:
    schedule = client.create_schedule(EVERY_5S, ["echo", "caught up"], overlap="parallel")
    try:
        sh("systemctl", "stop", "joblet.socket", "joblet.service")
        try:
            sh("systemctl", "stop", schedule.timer)  # as a reboot would: PID 1 has no timer
            time.sleep(10.5)  # two elapses pass with no timer and no agent
        finally:
            sh("systemctl", "start", "joblet.socket")
        missed = [j for j in client.list(schedule=schedule.id) if j.warnings]
        assert len(missed) == 1, missed  # one run for the downtime, not one per elapse
        assert "passed while no agent ran: it ran when the agent started" in missed[0].warnings[-1]
        assert schedule.timer in timers()  # made again
    finally:
        client.delete_schedule(schedule.id)


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            "99:99",
            "calendar: '99:99' is not valid; systemd: Failed to parse calendar specification",
        ),
        ("yesterday", "Hint: this expression is a valid timestamp"),
        ("2020-*-01 00:00", "systemd says it never elapses again"),
    ],
)
def test_calendar_expressions_systemd_refuses_are_refused_with_its_reason(
    when: str, message: str
) -> None:
    result = rnx("job", "run", "--schedule", when, "true")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr


def test_now_and_schedule_times_are_utc_aware(client: Client) -> None:
    schedule = client.create_schedule("hourly", ["true"])
    try:
        assert schedule.next_elapse is not None and schedule.next_elapse > datetime.now(UTC)
        assert schedule.spec.normalized == "*-*-* *:00:00"
    finally:
        client.delete_schedule(schedule.id)
