"""The admission queue against the real agent: capacity 2 (admission.max_running), five jobs;
two run, three wait QUEUED in priority and first-come order, and start in that order as room
frees; a queued job is canceled; a kill -9 of the agent keeps the queue as it was."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from rnx.client import Client, Job
from tests.integration.configured_agent import CONFIG, configured_agent, restart_agent
from tests.integration.conftest import rnx, sh, wait_state


@pytest.fixture(scope="module")
def capacity_two() -> Iterator[None]:
    with configured_agent("admission:\n  max_running: 2\n"):
        yield


def positions(client: Client, jobs: list[Job]) -> dict[str, int | None]:
    return {job.spec.name or "": client.get(job.id).queue_position for job in jobs}


def test_capacity_two_five_jobs_queue_in_priority_and_fifo_order(
    client: Client, capacity_two: None
) -> None:
    def run(name: str, priority: int, *command: str) -> Job:
        return client.run(list(command or ("sleep", "60")), name=name, priority=priority)

    a, b = run("adm-a", 5), run("adm-b", 5)
    low, high, normal = run("adm-low", 2), run("adm-high", 8), run("adm-normal", 5, "true")
    jobs = [a, b, low, high, normal]
    try:
        assert [j.state for j in jobs] == ["RUNNING"] * 2 + ["QUEUED"] * 3
        assert positions(client, [high, normal, low]) == {
            "adm-high": 1,
            "adm-normal": 2,
            "adm-low": 3,
        }
        listed = rnx("job", "list", "--state", "QUEUED")
        assert "QUEUED #1" in listed.stdout and "QUEUED #3" in listed.stdout, listed.stdout
        status = rnx("job", "status", "adm-low")
        assert "QUEUED #3" in status.stdout, status.stdout

        # A queued job is canceled: it leaves the queue, the others keep their order.
        extra = run("adm-extra", 5)
        assert client.get(extra.id).queue_position == 3
        canceled = client.cancel(extra.id)
        assert (canceled.state, canceled.queue_position) == ("CANCELED", None)
        assert positions(client, [high, normal, low]) == {
            "adm-high": 1,
            "adm-normal": 2,
            "adm-low": 3,
        }

        # kill -9 of the agent: the queue is the same when it is back; nothing started.
        sh("systemctl", "kill", "--signal=KILL", "--kill-who=main", "joblet.service")
        assert [client.get(j.id).state for j in jobs] == ["RUNNING"] * 2 + ["QUEUED"] * 3
        assert positions(client, [high, normal, low]) == {
            "adm-high": 1,
            "adm-normal": 2,
            "adm-low": 3,
        }

        # Room frees one job at a time: the queue's head starts, the rest keep waiting.
        client.stop(a.id)
        wait_state(client, high.id, "RUNNING")
        assert positions(client, [normal, low]) == {"adm-normal": 1, "adm-low": 2}
        client.stop(b.id)
        assert wait_state(client, normal.id, "COMPLETED").exit_code == 0
        wait_state(client, low.id, "RUNNING")
        started = [client.get(j.id).started_at for j in (high, normal, low)]
        assert None not in started
        assert started == sorted(started)  # type: ignore[type-var]
    finally:
        end_all(client, jobs)


def end_all(client: Client, jobs: list[Job]) -> None:
    """Stop what runs, cancel what waits."""
    for job in jobs:
        state = client.get(job.id).state
        if state == "RUNNING":
            client.stop(job.id)
        elif not state.ended:
            client.cancel(job.id)


def test_cancel_of_a_running_job_says_to_stop_it(client: Client, capacity_two: None) -> None:
    job = client.run(["sleep", "30"])
    try:
        result = rnx("job", "cancel", job.id)
        assert result.returncode == 4, result.stderr
        assert "only SCHEDULED and QUEUED jobs can be canceled" in result.stderr
    finally:
        client.stop(job.id)


def test_priority_out_of_range_is_refused_naming_it(client: Client) -> None:
    result = rnx("job", "run", "--priority", "12", "true")
    assert result.returncode == 2, result.stderr
    assert "priority: 12 is not valid; a whole number from 0 to 9" in result.stderr
    result = rnx("job", "run", "--priority", "urgent", "true")
    assert result.returncode == 2
    assert "'urgent' is not a priority; use low, normal, high or 0-9" in result.stderr


def test_quotas_beyond_the_host_stop_the_agent_with_the_key_named() -> None:
    saved = CONFIG.read_text() if CONFIG.exists() else None
    CONFIG.write_text("quotas:\n  owners:\n    alice:\n      memory_max: 64T\n")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 1))
    try:
        result = subprocess.run(
            ["systemctl", "restart", "joblet.service"], capture_output=True, check=False
        )
        assert result.returncode != 0
        log = sh("journalctl", "--no-pager", "-o", "cat", "-u", "joblet.service", "--since", since)
        assert (
            "joblet.yml: quotas.owners.alice.memory_max: 70368744177664 is not valid; at most "
            "this host's memory" in log
        ), log
    finally:
        if saved is None:
            CONFIG.unlink()
        else:
            CONFIG.write_text(saved)
        restart_agent()
