"""PID 1's journal as the agent reads it when it never saw a job's start done (it restarted
in between): when the unit started, from the real journald's "Started ..." entry."""

from __future__ import annotations

import asyncio

import pytest

from joblet_agent.adapters.journal import JournalctlJournal
from rnx.client import Client
from tests.integration.conftest import wait_state

pytestmark = pytest.mark.integration


def test_pid1s_journal_says_when_a_job_started(client: Client) -> None:
    job = client.run(["sh", "-c", "sleep 0.3"])
    final = wait_state(client, job.id, "COMPLETED", timeout=60)
    assert final.started_at is not None and final.ended_at is not None
    journal = JournalctlJournal()
    started = asyncio.run(journal.unit_started(final.unit))
    assert started is not None
    # The agent saw its start done a moment after PID 1 logged it; it ended 0.3 s later.
    assert abs((started - final.started_at).total_seconds()) < 1, (started, final.started_at)
    assert final.created_at <= started < final.ended_at
    assert asyncio.run(journal.unit_started("joblet-job-no-such-unit.service")) is None
