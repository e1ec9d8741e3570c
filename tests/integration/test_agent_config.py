"""Keys of /etc/joblet/joblet.yml, each by its effect on the running agent (README's
"Configuration"): written, the agent restarted to read them, the file restored after."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import sh, wait_state
from tests.integration.test_lifecycle import TERM_IGNORER

CONFIG = Path("/etc/joblet/joblet.yml")


@contextlib.contextmanager
def joblet_yml(text: str) -> Iterator[None]:
    """The agent running with `text` as its configuration, then with what was there before."""
    saved = CONFIG.read_text() if CONFIG.exists() else None
    CONFIG.parent.mkdir(parents=True, exist_ok=True)
    CONFIG.write_text(text)
    try:
        sh("systemctl", "restart", "joblet.service")
        yield
    finally:
        if saved is None:
            CONFIG.unlink()
        else:
            CONFIG.write_text(saved)
        sh("systemctl", "restart", "joblet.service")


def refused(call: object) -> RnxError:
    with pytest.raises(RnxError) as info:
        call()  # type: ignore[operator]
    return info.value


def test_max_running_queues_one_more_job_until_one_ends(client: Client) -> None:
    """jobs.max_running: 2 (the admission queue's cap when admission.max_running is unset): a
    third job waits QUEUED, first in line, and runs once one of the two ends."""
    with joblet_yml("jobs:\n  max_running: 2\n"):
        first, second = client.run(["sleep", "60"]), client.run(["sleep", "60"])
        try:
            third = client.run(["true"])
            assert (third.state, third.queue_position) == ("QUEUED", 1), third
            assert client.get(third.id).state == "QUEUED"
            client.stop(first.id)
            assert wait_state(client, third.id, "COMPLETED").exit_code == 0
        finally:
            for job in (first, second):
                if not client.get(job.id).state.ended:
                    client.stop(job.id)


def test_stop_grace_from_joblet_yml_is_the_grace(client: Client) -> None:
    """jobs.stop_grace: 3s instead of the default 10 s: SIGKILL 3 s after SIGTERM."""
    with joblet_yml("jobs:\n  stop_grace: 3s\n"):
        job = client.run(["python3", "-c", TERM_IGNORER])
        try:
            deadline = time.monotonic() + 30
            while "ready" not in list(client.logs(job.id, follow=False)):
                assert time.monotonic() < deadline, "the job never said it was ready"
                time.sleep(0.1)
        finally:
            stopped = client.stop(job.id)
        assert (stopped.state, stopped.signal) == ("STOPPED", "SIGKILL")
        lines = list(client.logs(job.id, follow=True))
        term = next(float(line.split()[1]) for line in lines if line.startswith("TERM "))
        last = [float(line.split()[1]) for line in lines if line.startswith("alive ")][-1]
        assert 2 <= last - term < 8, f"killed {last - term:.1f}s after SIGTERM, grace 3s"


def test_default_and_most_timeout_from_joblet_yml(client: Client) -> None:
    with joblet_yml("jobs:\n  default_timeout: 2s\n  max_timeout: 1m\n"):
        job = client.run(["sleep", "60"])
        assert job.spec.limits.timeout_sec == 2
        final = wait_state(client, job.id, *("TIMEOUT", "COMPLETED", "FAILED", "STOPPED"))
        assert (final.state, final.exit_code) == ("TIMEOUT", 124)
        error = refused(lambda: client.run(["true"], timeout_sec="2m"))
        assert error.status == 400
        assert error.message.startswith("limits.timeout_sec:"), error.message
        assert "60" in error.message, error.message


def test_work_and_volume_and_upload_maximums_from_joblet_yml(
    client: Client, tmp_path: Path
) -> None:
    config = "jobs:\n  max_work_size: 32M\n  max_volume_size: 32M\n  max_upload_entries: 2\n"
    with joblet_yml(config):
        error = refused(lambda: client.run(["true"], work_bytes="64M"))
        assert (error.status, error.message.split(":")[0]) == (400, "limits.work_bytes"), error
        error = refused(lambda: client.create_volume("too-big-for-config", size="64M"))
        assert error.status == 400 and "size" in error.message, error
        for name in "abc":
            (tmp_path / name).write_text(name)
        files = [str(tmp_path / name) for name in "abc"]
        error = refused(lambda: client.upload(files))
        assert (error.status, error.code) == (413, "too-large"), error
        assert "entries: 3 is over this agent's limit of 2" in error.message
