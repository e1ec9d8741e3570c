"""Exit codes, signals, timeouts, stop, and output in the journal."""

from __future__ import annotations

import time

from joblet_agent.adapters.config_file import load_config
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


def test_stop_sends_sigterm_and_a_job_that_obeys_ends_by_it(client: Client) -> None:
    job = client.run(["sleep", "300"])
    wait_state(client, job.id, "RUNNING")
    stopped = client.stop(job.id)
    assert (stopped.state, stopped.signal, stopped.stop_requested) == ("STOPPED", "SIGTERM", True)


def seconds(span: str) -> float:
    """systemd's time span as `systemctl show` prints it: "10s", "1min 30s", "500ms"."""
    units = {"min": 60.0, "s": 1.0, "ms": 0.001}
    total = 0.0
    for token in span.split():
        number = token.rstrip("mins")
        total += float(number) * units[token[len(number) :]]
    return total


# Says when it got SIGTERM and, twice a second, that it lives, on its own clock.
TERM_IGNORER = """
import signal, time
start = time.monotonic()
signal.signal(signal.SIGTERM, lambda *_: print("TERM", time.monotonic() - start, flush=True))
print("ready", flush=True)
while True:
    print("alive", time.monotonic() - start, flush=True)
    time.sleep(0.5)
"""


def test_stop_sends_sigterm_then_sigkill_after_the_grace(client: Client) -> None:
    """SIGTERM first (the job says it got it), then nothing for the unit's stop grace (it keeps
    saying it lives), then SIGKILL (its end), `jobs.stop_grace` after the SIGTERM."""
    job = client.run(["python3", "-c", TERM_IGNORER])
    try:
        wait_state(client, job.id, "RUNNING")
        grace = load_config().jobs.stop_grace_sec  # /etc/joblet/joblet.yml's, as the agent has it
        assert seconds(unit_property(job.unit, "TimeoutStopUSec")) == grace
        deadline = time.monotonic() + 30
        while "ready" not in list(client.logs(job.id, follow=False)):
            assert time.monotonic() < deadline, "the job never said it was ready"
            time.sleep(0.1)
    finally:
        stopped = client.stop(job.id)
    assert (stopped.state, stopped.signal, stopped.exit_code) == ("STOPPED", "SIGKILL", 137)
    lines = list(client.logs(job.id, follow=True))
    terms = [float(line.split()[1]) for line in lines if line.startswith("TERM ")]
    alive = [float(line.split()[1]) for line in lines if line.startswith("alive ")]
    assert len(terms) == 1, lines[-5:]
    lived_on = alive[-1] - terms[0]  # what the grace gave it, by its own clock
    assert grace - 1 <= lived_on < grace + 5, (
        f"killed {lived_on:.1f}s after SIGTERM, grace {grace}s"
    )


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
        # root over the local socket is unix:root (domain/owner.py); ':' stays in a unit name.
        assert unit_property(unit, "Slice") == "joblet-owner-unix:root.slice"
        assert unit_property(unit, "ControlGroup").startswith(
            "/joblet.slice/joblet-owner.slice/joblet-owner-unix:root.slice/"
        )
        assert unit_property(unit, "MemoryMax") == str(128 * 1024 * 1024)
        assert unit_property(unit, "TasksMax") == "77"
        assert unit_property(unit, "CPUQuotaPerSecUSec") == "500ms"
        # journald's rate limit per job (jobs.log_lines per jobs.log_interval: 100,000 a minute)
        assert unit_property(unit, "LogRateLimitIntervalUSec") == "1min"
        assert unit_property(unit, "LogRateLimitBurst") == "100000"
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
