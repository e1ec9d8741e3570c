"""Exit codes, signals, timeouts, stop, and output in the journal."""

from __future__ import annotations

import time

from rnx.client import Client
from tests.integration.conftest import journal_messages, unit_property, wait_state


def test_exit_codes_propagate(client: Client) -> None:
    ok = client.run(["true"])
    bad = client.run(["sh", "-c", "exit 3"])
    assert wait_state(client, ok.id, "COMPLETED").exit_code == 0
    failed = wait_state(client, bad.id, "FAILED")
    assert (failed.exit_code, failed.result) == (3, "exit-code")


def test_signals_propagate(client: Client) -> None:
    job = client.run(["sh", "-c", "kill -SEGV $$"])
    final = wait_state(client, job.id, "FAILED")
    assert final.signal == "SIGSEGV"
    assert final.exit_code == 128 + 11


def test_arguments_reach_the_job_verbatim(client: Client) -> None:
    job = client.run(["printf", "%s|", "$HOME", "${PATH}", "%n", "a b"])
    wait_state(client, job.id, "COMPLETED")
    assert list(client.logs(job.id, follow=False)) == ["$HOME|${PATH}|%n|a b|"]


def test_timeout_gives_timeout_and_124(client: Client) -> None:
    job = client.run(["sleep", "30"], timeout_sec=1)
    final = wait_state(client, job.id, "TIMEOUT", "FAILED", "COMPLETED", timeout=20)
    assert (final.state, final.exit_code, final.result) == ("TIMEOUT", 124, "timeout")


def test_stop_within_grace(client: Client) -> None:
    job = client.run(["sleep", "300"])
    wait_state(client, job.id, "RUNNING")
    start = time.monotonic()
    stopped = client.stop(job.id)
    assert stopped.state == "STOPPED"
    assert time.monotonic() - start < 10  # sleep dies on SIGTERM; the grace is 10 s


def test_stop_escalates_to_sigkill_for_a_term_ignoring_job(client: Client) -> None:
    job = client.run(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
    wait_state(client, job.id, "RUNNING")
    stopped = client.stop(job.id)
    assert stopped.state == "STOPPED"


def test_output_lands_in_the_journal_under_the_unit(client: Client) -> None:
    job = client.run(["sh", "-c", "echo to-stdout; echo to-stderr >&2"])
    wait_state(client, job.id, "COMPLETED")
    messages = journal_messages(job.unit)
    assert "to-stdout" in messages and "to-stderr" in messages


def test_a_flood_of_lines_all_arrives(client: Client) -> None:
    job = client.run(["seq", "1", "100000"])
    wait_state(client, job.id, "COMPLETED", timeout=60)
    lines = list(client.logs(job.id, follow=True))
    assert len(lines) == 100000
    assert lines[0] == "1" and lines[-1] == "100000"
    assert lines == [str(n) for n in range(1, 100001)]


def test_unit_runs_in_joblet_slice_with_properties(client: Client) -> None:
    job = client.run(["sleep", "30"], memory_bytes=128 * 1024 * 1024, cpu_percent=50, max_tasks=77)
    try:
        wait_state(client, job.id, "RUNNING")
        unit = job.unit
        # Its owner's slice (root's, on the local socket), inside joblet.slice (units/owner.py).
        assert unit_property(unit, "Slice") == "joblet-owner-root.slice"
        assert unit_property(unit, "ControlGroup").startswith(
            "/joblet.slice/joblet-owner.slice/joblet-owner-root.slice/"
        )
        assert unit_property(unit, "MemoryMax") == str(128 * 1024 * 1024)
        assert unit_property(unit, "TasksMax") == "77"
        assert unit_property(unit, "CPUQuotaPerSecUSec") == "500ms"
        assert unit_property(unit, "LogRateLimitIntervalUSec") == "1us"
    finally:
        client.stop(job.id)


def test_delete_refused_while_running_then_removes_files(client: Client) -> None:
    from pathlib import Path

    from rnx.errors import RnxError

    job = client.run(["sleep", "30"])
    try:
        try:
            client.delete(job.id)
            raise AssertionError("deleting a running job was allowed")
        except RnxError as exc:
            assert exc.status == 409
    finally:
        client.stop(job.id)
    assert Path("/var/lib/joblet/jobs", job.id).is_dir()
    client.delete(job.id[:8])
    assert not Path("/var/lib/joblet/jobs", job.id).exists()
