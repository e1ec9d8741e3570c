"""A job is referred to by its id, a unique prefix of it, or its name, in every command and
route that takes a job (issue 15): `rnx job status longone` for a job run with --name longone."""

from __future__ import annotations

import json
import uuid

from rnx.client import Client
from tests.integration.conftest import rnx, wait_state


def test_a_job_is_found_by_its_name_in_every_command(client: Client) -> None:
    name = f"longone-{uuid.uuid4().hex[:6]}"
    job = client.run(["sleep", "30"], name=name)
    try:
        wait_state(client, job.id, "RUNNING")
        status = rnx("--json", "job", "status", name)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["id"] == job.id
        assert client.get(name).id == job.id  # the API route takes it too
        stopped = rnx("job", "stop", name)
        assert stopped.returncode == 0, stopped.stderr
        assert client.get(job.id).state == "STOPPED"
        logs = rnx("job", "log", name)
        assert logs.returncode == 0, logs.stderr
        deleted = rnx("job", "delete", name)
        assert deleted.returncode == 0, deleted.stderr
    finally:
        if client.list() and any(j.id == job.id for j in client.list()):
            state = client.get(job.id).state
            if state in ("SCHEDULED", "RUNNING"):
                client.stop(job.id)


def test_a_name_two_live_jobs_have_is_ambiguous_and_lists_them(client: Client) -> None:
    name = f"twice-{uuid.uuid4().hex[:6]}"
    first = client.run(["sleep", "30"], name=name)
    second = client.run(["sleep", "30"], name=name)
    try:
        status = rnx("job", "status", name)
        assert status.returncode == 3, status.stderr  # not found or ambiguous
        assert "ambiguous" in status.stderr
        assert first.id in status.stderr and second.id in status.stderr
    finally:
        client.stop(first.id)
        client.stop(second.id)
    # Once both ended, the newest is not guessed either: still both are candidates.
    assert rnx("job", "status", name).returncode == 3


def test_a_live_job_is_meant_before_ended_ones_of_its_name(client: Client) -> None:
    name = f"again-{uuid.uuid4().hex[:6]}"
    old = client.run(["true"], name=name)
    wait_state(client, old.id, "COMPLETED")
    new = client.run(["sleep", "30"], name=name)
    try:
        assert client.get(name).id == new.id
    finally:
        client.stop(new.id)
