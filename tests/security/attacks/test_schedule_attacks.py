"""A hostile developer against schedules and the queue: options smuggled into systemd-analyze
as calendar expressions, another owner's schedules and queued jobs, a flood of queued jobs.
After each, another user still runs a job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.security.attacks.conftest import another_user_runs_a_job


@pytest.fixture
def victim(certs: dict[str, str]) -> Iterator[Client]:
    with Client(config=certs["developer2"]) as c:
        yield c


@pytest.mark.parametrize(
    "calendar",
    ["--help", "--base-time=@0 hourly", "--iterations=100000000 hourly", "-h", "hourly\x00x"],
)
def test_a_calendar_expression_is_never_an_option(developer: Client, calendar: str) -> None:
    """systemd-analyze gets the expression after `--`: systemd refuses it as an expression."""
    with pytest.raises(RnxError) as refused:
        developer.create_schedule(calendar, ["true"])
    assert refused.value.status == 400
    assert "calendar:" in refused.value.message
    assert "\x00" in calendar or "Failed to parse calendar specification" in refused.value.message
    another_user_runs_a_job()


def test_an_expression_too_long_is_refused_before_systemd_reads_it(developer: Client) -> None:
    with pytest.raises(RnxError) as refused:
        developer.create_schedule("*-*-* " * 100, ["true"])
    assert refused.value.status == 400
    assert "at most 256 printable characters" in refused.value.message


def test_another_owners_schedule_and_queued_jobs_are_out_of_reach(
    developer: Client, victim: Client
) -> None:
    schedule = victim.create_schedule("hourly", ["true"])
    waiting = victim.run(["true"], schedule="1h")
    try:
        for attempt in (
            lambda: developer.pause_schedule(schedule.id),
            lambda: developer.delete_schedule(schedule.id),
            lambda: developer.cancel(waiting.id),
        ):
            with pytest.raises(RnxError) as refused:
                attempt()
            assert refused.value.status == 403
        assert victim.schedule(schedule.id).state == "ACTIVE"
        assert victim.get(waiting.id).state == "SCHEDULED"
    finally:
        victim.delete_schedule(schedule.id)
        victim.cancel(waiting.id)
    another_user_runs_a_job()
