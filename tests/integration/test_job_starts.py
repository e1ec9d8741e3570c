"""A job between its submit and its exec: canceled there, or its start failing there.

PID 1's executor takes /dev/loop-control's lock to attach a job's /work image; while the test
holds that lock (test_rbac_matrix.starts_held), a submitted job stays SCHEDULED.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from rnx.client import Client
from tests.integration.conftest import rnx, sh, unit_property, wait_state
from tests.integration.test_rbac_matrix import starts_held


def submit_in_background(
    client: Client, *argv: str
) -> tuple[threading.Thread, list[Any], str, str]:
    """Starts `rnx job run -d -- ARGV` (it answers once the start is over: exec'd or failed) and
    waits for its job to be SCHEDULED; the caller holds starts_held(). (thread, [its result],
    job id, unit)"""
    before = {j.id for j in client.list(state="scheduled")}
    done: list[Any] = []
    submit = threading.Thread(
        target=lambda: done.append(rnx("--json", "job", "run", "-d", "--", *argv))
    )
    submit.start()
    deadline = time.monotonic() + 30
    while not (new := [j for j in client.list(state="scheduled") if j.id not in before]):
        assert time.monotonic() < deadline, "the job never became SCHEDULED"
        time.sleep(0.05)
    return submit, done, new[0].id, str(new[0].unit)


def test_a_scheduled_job_is_canceled_and_never_runs(client: Client) -> None:
    """Once the start is over (the submit answered), a `sleep` that had been exec'd would be an
    active unit: it is not, and the job stays CANCELED."""
    with starts_held():
        submit, done, job_id, unit = submit_in_background(client, "sleep", "600")
        canceled = client.cancel(job_id)
        assert (canceled.state, canceled.reason) == ("CANCELED", "canceled before it ran")
    submit.join(90)
    assert done and done[0].returncode == 0, done
    final = client.get(job_id)
    assert (final.state, final.started_at, final.exit_code) == ("CANCELED", None, None)
    assert sh("systemctl", "is-active", unit, check=False).strip() != "active"


def test_a_start_that_dies_before_exec_is_failed_not_scheduled_or_timeout(client: Client) -> None:
    """api-fuzz finding 10: a job whose start failed stayed SCHEDULED, then read TIMEOUT. Here
    PID 1's executor for it is killed while it waits to attach /work (before exec)."""
    with starts_held():
        submit, done, job_id, unit = submit_in_background(client, "true")
        deadline = time.monotonic() + 30  # the record is SCHEDULED before PID 1 forks it
        while (executor := unit_property(unit, "MainPID")) in ("", "0"):
            assert time.monotonic() < deadline, "PID 1 never forked the job's process"
            time.sleep(0.05)
        sh("kill", "-9", executor)
        final = wait_state(client, job_id, "FAILED", "COMPLETED", "TIMEOUT", "STOPPED")
    submit.join(90)
    assert done and done[0].returncode == 0, done
    assert final.state == "FAILED", final
    assert final.started_at is None, final  # its program never ran
