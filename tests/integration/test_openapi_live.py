"""The real agent's answers fit docs/openapi.yaml: every JSON endpoint, its errors, and the SSE log
stream, checked against the schema the document gives for that status."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from rnx.client import Client
from rnx.errors import RnxError
from tests.integration.conftest import wait_state
from tests.unit.test_openapi import json_schema, operation, response_schema, validate

SOCKET = "/run/joblet/joblet.sock"
# No job has this owner: DELETE /v1/jobs is exercised without deleting anyone else's jobs.
NOBODY = "openapi-live-nobody"


def ok(
    client: Client,
    method: str,
    path: str,
    template: str,
    status: int = 200,
    *,
    body: Any = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A successful call through rnx's client; its body must fit the documented schema."""
    data = client._call(method, path, body=body, params=params)
    assert isinstance(data, dict)
    validate(data, response_schema(method, template, status))
    return data


async def _raw(
    method: str, path: str, *, data: bytes | None, params: dict[str, str] | None
) -> tuple[int, Any]:
    connector = aiohttp.UnixConnector(path=SOCKET)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, f"http://joblet{path}", data=data, params=params) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def refused(
    method: str,
    path: str,
    template: str,
    status: int,
    *,
    body: Any = None,
    data: bytes | None = None,
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A refused call, read raw so that the whole body (not what rnx keeps of it) is checked."""
    if body is not None:
        data = json.dumps(body).encode()
    got, answer = asyncio.run(_raw(method, path, data=data, params=params))
    assert got == status, answer
    validate(answer, response_schema(method, template, status))
    assert isinstance(answer, dict)
    return answer


@pytest.fixture
def jobs(client: Client) -> Iterator[list[str]]:
    """Ids of jobs a test started: stopped if still running, and deleted, whatever happens."""
    started: list[str] = []
    yield started
    for job_id in started:
        with contextlib.suppress(RnxError):  # it had ended
            client.stop(job_id)
        with contextlib.suppress(RnxError):  # the test deleted it
            client.delete(job_id)


def test_job_endpoints(client: Client, jobs: list[str]) -> None:
    request = {
        "command": "sleep",
        "args": ["30"],
        "env": {"GREETING": "hello"},
        "secret_env": {"TOKEN": "s3cret"},
        "name": "openapi-live",
        "limits": {"cpu_cores": "0", "max_tasks": 64, "timeout_sec": "5m"},
    }
    body_schema = operation("POST", "/v1/jobs")["requestBody"]["content"]["application/json"]
    validate(request, json_schema(body_schema["schema"]))
    job = ok(client, "POST", "/v1/jobs", "/v1/jobs", 201, body=request)
    jobs.append(job["id"])
    assert job["spec"]["secret_env"] == {"TOKEN": "***"}
    assert job["spec"]["limits"]["timeout_sec"] == 300
    one = f"/v1/jobs/{job['id']}"
    prefix = f"/v1/jobs/{job['id'][:8]}"

    assert ok(client, "GET", prefix, "/v1/jobs/{id}")["id"] == job["id"]
    listed = ok(
        client,
        "GET",
        "/v1/jobs",
        "/v1/jobs",
        params={"state": "running,scheduled", "owner": job["owner"], "limit": "1000"},
    )
    assert job["id"] in [j["id"] for j in listed["jobs"]]
    assert (listed["limit"], listed["offset"]) == (1000, 0)
    assert all(j["state"] in ("RUNNING", "SCHEDULED") for j in listed["jobs"])
    empty = ok(client, "GET", "/v1/jobs", "/v1/jobs", params={"owner": NOBODY, "offset": "5"})
    assert (empty["jobs"], empty["offset"]) == ([], 5)

    running = ok(client, "GET", one + "/metrics", "/v1/jobs/{id}/metrics")
    assert running["unit"]["ActiveState"] == "active"
    refused("POST", one + "/cancel", "/v1/jobs/{id}/cancel", 409)
    refused("DELETE", one, "/v1/jobs/{id}", 409)

    stopped = ok(client, "POST", one + "/stop", "/v1/jobs/{id}/stop")
    assert (stopped["state"], stopped["stop_requested"]) == ("STOPPED", True)
    assert refused("POST", one + "/cancel", "/v1/jobs/{id}/cancel", 409)["code"] == "conflict"
    refused("POST", one + "/stop", "/v1/jobs/{id}/stop", 409)
    ended = ok(client, "GET", one + "/metrics", "/v1/jobs/{id}/metrics")
    assert (ended["state"], ended["unit"]) == ("STOPPED", {})

    assert ok(client, "DELETE", prefix, "/v1/jobs/{id}") == {"deleted": job["id"]}
    for path, template in [
        (one, "/v1/jobs/{id}"),
        (one + "/metrics", "/v1/jobs/{id}/metrics"),
        (one + "/logs", "/v1/jobs/{id}/logs"),
        (one + "/stop", "/v1/jobs/{id}/stop"),
    ]:
        method = "POST" if path.endswith("/stop") else "GET"
        assert refused(method, path, template, 404)["code"] == "not-found"


def test_delete_all_and_health(client: Client) -> None:
    result = ok(client, "DELETE", "/v1/jobs", "/v1/jobs", params={"owner": NOBODY})
    assert result == {"deleted": 0, "skipped_running": 0}
    health = ok(client, "GET", "/v1/health", "/v1/health")
    assert health["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": "true", "limits": {"cpu_percent": 0}}, "limits.cpu_percent"),
        ({"command": "true", "limits": {"memory_bytes": "lots"}}, "limits.memory_bytes"),
        ({"command": "true", "env": {"JOB_ID": "forged"}}, "env.JOB_ID"),
        ({"command": "true", "surprise": True}, "surprise"),
        ({"args": ["x"]}, "command"),
        ({"command": "definitely-not-a-program"}, "command"),
    ],
)
def test_bad_spec_is_a_400_naming_the_field(body: dict[str, Any], field: str) -> None:
    answer = refused("POST", "/v1/jobs", "/v1/jobs", 400, body=body)
    assert answer["code"] == "invalid"
    assert answer["message"].startswith(field + ":"), answer["message"]


def test_other_refusals() -> None:
    refused("POST", "/v1/jobs", "/v1/jobs", 400, data=b"{not json")
    refused("POST", "/v1/jobs", "/v1/jobs", 413, body={"command": "true", "args": ["x" * 2**20]})
    for params in ({"limit": "0"}, {"limit": "1001"}, {"offset": "-1"}, {"state": "asleep"}):
        answer = refused("GET", "/v1/jobs", "/v1/jobs", 400, params=params)
        assert answer["message"].startswith(next(iter(params))), answer["message"]
    refused("GET", "/v1/jobs/abc", "/v1/jobs/{id}", 400)
    refused("GET", "/v1/jobs/ffffffff-0000", "/v1/jobs/{id}", 404)


# -- the log stream -------------------------------------------------------------------------------


def _parse_sse(text: str) -> tuple[list[dict[str, str]], list[str]]:
    """Events as {field: value} (data lines joined) and the comments, per the SSE format."""
    events: list[dict[str, str]] = []
    comments: list[str] = []
    for block in text.split("\n\n"):
        event: dict[str, str] = {}
        for line in block.split("\n"):
            if not line:
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            field, _, value = line.partition(": ")
            assert field in ("id", "event", "data"), f"unexpected SSE line {line!r}"
            event[field] = event[field] + "\n" + value if field in event else value
        if event:
            events.append(event)
    return events, comments


def read_logs(
    job_id: str, *, params: dict[str, str], headers: dict[str, str]
) -> list[dict[str, Any]]:
    async def get() -> tuple[int, str, str]:
        connector = aiohttp.UnixConnector(path=SOCKET)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(
                f"http://joblet/v1/jobs/{job_id}/logs", params=params, headers=headers
            ) as resp,
        ):
            return resp.status, resp.headers["Content-Type"], await resp.text()

    status, content_type, text = asyncio.run(get())
    assert status == 200, text
    assert content_type.startswith("text/event-stream")
    content = operation("GET", "/v1/jobs/{id}/logs")["responses"]["200"]["content"]
    documented = content["text/event-stream"]["x-joblet-events"]
    events, comments = _parse_sse(text)
    assert set(comments) <= {"heartbeat"}
    for event in events:
        kind = event.get("event")
        assert kind in documented, event
        validate(json.loads(event["data"]), json_schema(documented[kind]["data"]))
        assert ("id" in event) == (kind == "log"), event
    assert [e["event"] for e in events].count("end") == 1
    assert events[-1]["event"] == "end"
    return [{"event": e["event"], "id": e.get("id"), **json.loads(e["data"])} for e in events]


def test_log_stream_events(client: Client, jobs: list[str]) -> None:
    job = client.run(["sh", "-c", "echo one; echo two >&2; echo three"])
    jobs.append(job.id)
    wait_state(client, job.id, "COMPLETED")

    history = read_logs(job.id, params={}, headers={})
    assert [e.get("message") for e in history[:-1]] == ["one", "two", "three"]
    assert history[-1] == {
        "event": "end",
        "id": job.id,
        "state": "COMPLETED",
        "exit_code": 0,
        "signal": None,
        "reason": None,
    }
    followed = read_logs(job.id, params={"follow": "1"}, headers={})
    assert followed == history

    first = str(history[0]["id"])
    by_header = read_logs(job.id, params={}, headers={"Last-Event-ID": first})
    by_query = read_logs(job.id, params={"after": first}, headers={})
    assert by_header == by_query == history[1:]
