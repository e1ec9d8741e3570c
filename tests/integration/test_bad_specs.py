"""Bad requests are refused through the real API with the field named, and leave nothing behind."""

from __future__ import annotations

from typing import Any

import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import JOBS_DIR, active_job_units, sh


def all_job_units() -> str:
    return sh("systemctl", "list-units", "--all", "--no-legend", "joblet-job-*")


CASES: list[tuple[dict[str, Any], str]] = [
    ({"limits": {"memory_bytes": -1}}, "limits.memory_bytes"),
    ({"limits": {"cpu_percent": 0}}, "limits.cpu_percent"),
    ({"limits": {"cpu_percent": 100000}}, "limits.cpu_percent"),
    ({"limits": {"cpu_cores": "0-999"}}, "limits.cpu_cores"),
    ({"limits": {"cpu_cores": "1,,2"}}, "limits.cpu_cores"),
    ({"limits": {"max_tasks": 0}}, "limits.max_tasks"),
    ({"limits": {"timeout_sec": "never"}}, "limits.timeout_sec"),
    ({"limits": {"io_read_bps": "fast"}}, "limits.io_read_bps"),
    ({"limits": {"memory_bytes": "1T"}}, "limits.memory_bytes"),
    ({"env": {"JOB_ID": "forged"}}, "env.JOB_ID"),
    ({"surprise": True}, "surprise"),
]


@pytest.mark.parametrize(("extra", "field"), CASES, ids=[c[1] for c in CASES])
def test_bad_spec_is_refused_and_leaves_nothing(
    client: Client, extra: dict[str, Any], field: str
) -> None:
    units_before, dirs_before = all_job_units(), set(JOBS_DIR.iterdir())
    jobs_before = len(client.list(limit="1000"))
    with pytest.raises(RnxError) as info:
        client._call("POST", "/v1/jobs", body={"command": "true", **extra})
    assert info.value.status == 400
    assert info.value.code == "invalid"
    assert info.value.message.startswith(field), info.value.message
    assert all_job_units() == units_before
    assert set(JOBS_DIR.iterdir()) == dirs_before
    assert len(client.list(limit="1000")) == jobs_before


def test_unknown_program_is_refused_before_a_unit_exists(client: Client) -> None:
    before = active_job_units()
    with pytest.raises(RnxError) as info:
        client.run(["definitely-not-a-program"])
    assert info.value.status == 400
    assert "definitely-not-a-program" in info.value.message
    assert active_job_units() == before


def test_body_that_is_not_json(client: Client) -> None:
    import asyncio

    import aiohttp

    async def post() -> tuple[int, dict[str, Any]]:
        connector = aiohttp.UnixConnector(path="/run/joblet/joblet.sock")
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post("http://joblet/v1/jobs", data=b"{not json") as resp,
        ):
            return resp.status, await resp.json()

    status, body = asyncio.run(post())
    assert status == 400
    assert set(body) == {"code", "message", "hint"}
    assert "not JSON" in body["message"]


def test_bad_resume_cursor_and_wrong_method_are_clear(client: Client) -> None:
    import asyncio

    import aiohttp

    job = client.run(["true"])

    async def probe() -> list[tuple[int, dict[str, Any], str | None]]:
        connector = aiohttp.UnixConnector(path="/run/joblet/joblet.sock")
        out = []
        async with aiohttp.ClientSession(connector=connector) as session:
            for method, path, headers in (
                ("GET", f"/v1/jobs/{job.id}/logs?follow=TRUE", {"Last-Event-ID": "bogus"}),
                ("PUT", "/v1/jobs", {}),
            ):
                async with session.request(method, "http://joblet" + path, headers=headers) as r:
                    out.append((r.status, await r.json(), r.headers.get("Allow")))
        return out

    (cursor_status, cursor_body, _), (method_status, method_body, allow) = asyncio.run(probe())
    assert cursor_status == 400
    assert cursor_body["message"].startswith("Last-Event-ID: 'bogus' is not a journal cursor")
    assert (method_status, method_body["code"]) == (405, "method-not-allowed")
    assert allow is not None and "POST" in allow
