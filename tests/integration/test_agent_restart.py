"""Jobs are not the agent's children: kill -9, stop and restart never stop a job, and the agent
finds out the truth about jobs that ended while it was away."""

from __future__ import annotations

import time

from rnx.client import Client
from tests.integration.conftest import sh, unit_property, wait_state


def agent_pid() -> str:
    return unit_property("joblet.service", "MainPID")


def test_kill_9_of_the_agent_leaves_jobs_running(client: Client) -> None:
    long = client.run(["sleep", "60"])
    short = client.run(["sh", "-c", "sleep 3; exit 5"])
    wait_state(client, long.id, "RUNNING")
    old_pid = agent_pid()
    sh("systemctl", "kill", "--signal=KILL", "--kill-who=main", "joblet.service")
    try:
        # Socket activation brings the agent back on the next request.
        assert unit_property(long.unit, "ActiveState") == "active"
        job = client.get(long.id)
        assert job.state == "RUNNING"
        assert agent_pid() != old_pid
        final = wait_state(client, short.id, "FAILED", "COMPLETED", timeout=20)
        assert (final.state, final.exit_code) == ("FAILED", 5)
    finally:
        client.stop(long.id)


def test_jobs_that_end_while_agent_is_down_get_their_true_outcome(client: Client) -> None:
    failing = client.run(["sh", "-c", "sleep 2; exit 42"])
    passing = client.run(["sh", "-c", "sleep 2"])
    killed = client.run(["sh", "-c", "sleep 2; kill -TERM $$"])
    jobs = (failing, passing, killed)
    for job in jobs:
        wait_state(client, job.id, "RUNNING")
    sh("systemctl", "stop", "joblet.service")
    try:
        # The jobs end and their units are garbage-collected while no agent watches.
        deadline = time.monotonic() + 20
        while any(unit_property(j.unit, "ActiveState") == "active" for j in jobs):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert sh("systemctl", "is-active", "joblet.service", check=False).strip() != "active"
    finally:
        sh("systemctl", "start", "joblet.service")
    final = wait_state(client, failing.id, "FAILED", "COMPLETED", timeout=10)
    assert (final.state, final.exit_code) == ("FAILED", 42)
    assert final.reason == "exited with status 42"
    final = wait_state(client, passing.id, "FAILED", "COMPLETED", timeout=10)
    assert (final.state, final.exit_code) == ("COMPLETED", 0)
    final = wait_state(client, killed.id, "FAILED", "COMPLETED", timeout=10)
    assert (final.state, final.signal) == ("FAILED", "SIGTERM")


def test_restart_of_the_agent_keeps_a_job_and_sees_its_end(client: Client) -> None:
    job = client.run(["sh", "-c", "sleep 3; echo done"])
    wait_state(client, job.id, "RUNNING")
    sh("systemctl", "restart", "joblet.service")
    assert client.get(job.id).state == "RUNNING"
    final = wait_state(client, job.id, "COMPLETED", "FAILED", timeout=20)
    assert final.state == "COMPLETED"
    assert list(client.logs(job.id, follow=False)) == ["done"]


def test_daemon_reload_neither_ends_a_job_nor_loses_its_outcome(client: Client) -> None:
    """Every `apt install` of a package with units runs daemon-reload while jobs run."""
    job = client.run(["sh", "-c", "sleep 3; exit 7"])
    wait_state(client, job.id, "RUNNING")
    sh("systemctl", "daemon-reload")
    # A barrier, not a pause: another job's start is answered only after its JobRemoved, which
    # PID 1 sends after the reload's UnitRemoved signals; so those were handled by then.
    client.run(["true"])
    assert client.get(job.id).state == "RUNNING"
    assert unit_property(job.unit, "ActiveState") == "active"
    final = wait_state(client, job.id, "FAILED", "COMPLETED", timeout=20)
    assert (final.state, final.exit_code) == ("FAILED", 7)
