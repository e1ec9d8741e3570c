"""rnx.Client's typed answers: what each call sends, and how the agent's JSON is read (strict on
the fields a model has, tolerant of fields a newer agent adds), against a fake agent."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import rnx
from rnx.client import (
    Client,
    Health,
    Job,
    JobState,
    LogEvent,
    Network,
    Runtime,
    RuntimeList,
    Volume,
)
from rnx.errors import RnxError
from tests.unit import fake_agent as canned
from tests.unit.fake_agent import JOB_ID, FakeAgent, fake_agent, job, log_stream


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[FakeAgent]:
    with fake_agent(tmp_path) as fake:
        yield fake


@pytest.fixture
def client(agent: FakeAgent) -> Iterator[Client]:
    with Client(socket=agent.socket) as c:
        yield c


def test_the_canned_answers_fit_the_documented_schemas() -> None:
    """The fake agent answers as docs/openapi.yaml says the real one does."""
    from tests.unit.test_openapi import response_schema, validate

    installed = {k: v for k, v in canned.runtime().items() if k not in ("directory", "jobs")}
    for method, template, status, answer in [
        ("GET", "/v1/jobs/{id}", 200, job()),
        ("GET", "/v1/jobs/{id}/metrics", 200, canned.metrics()),
        ("GET", "/v1/volumes/{name}", 200, canned.volume()),
        ("GET", "/v1/networks/{name}", 200, canned.network()),
        (
            "GET",
            "/v1/runtimes",
            200,
            {"architecture": "amd64", "runtimes": [canned.runtime_summary()]},
        ),
        ("GET", "/v1/runtimes/{name}", 200, canned.runtime()),
        ("POST", "/v1/runtimes/validate", 200, {"valid": True, "runtime": installed}),
        ("GET", "/v1/health", 200, canned.health()),
        ("GET", "/v1/jobs/{id}", 404, canned.error("not-found", "no such job")),
    ]:
        validate(answer, response_schema(method, template, status))


def test_run_sends_the_request_and_returns_a_typed_job(agent: FakeAgent, client: Client) -> None:
    agent.answer("POST /v1/jobs", job(state="SCHEDULED", exit_code=None), 201)
    started = client.run(
        ["python3", "-c", "print(42)"],
        env={"GREETING": "hello"},
        volumes=["data:ro"],
        memory_bytes=268435456,
        cpu_percent=50,
    )
    assert agent.requests == [
        (
            "POST",
            "/v1/jobs",
            {
                "command": "python3",
                "args": ["-c", "print(42)"],
                "env": {"GREETING": "hello"},
                "volumes": [{"name": "data", "read_only": True}],
                "limits": {"memory_bytes": 268435456, "cpu_percent": 50},
            },
        )
    ]
    assert isinstance(started, Job)
    assert (started.id, started.state, started.exit_code) == (JOB_ID, "SCHEDULED", None)
    assert started.state is JobState.SCHEDULED and not started.state.ended
    assert started.spec.argv == ("python3", "-c", "print(42)")
    assert started.spec.limits.memory_bytes == 268435456
    assert started.spec.limits.timeout_sec == 60.0
    assert started.spec.volumes[0].read_only is True
    assert started.spec.secret_env == {"TOKEN": "***"}
    assert started.created_at == datetime(2026, 12, 4, 10, 11, 12, 345678, tzinfo=UTC)


def test_a_bad_volume_flag_is_refused_before_anything_is_sent(
    agent: FakeAgent, client: Client
) -> None:
    with pytest.raises(RnxError, match=r"--volume: 'data:rx' is not valid") as refused:
        client.run(["true"], volumes=["data:rx"])
    assert refused.value.code == "invalid"
    assert agent.requests == []


def test_fields_a_newer_agent_adds_are_kept_in_raw(agent: FakeAgent, client: Client) -> None:
    newer = job(cgroup="/joblet.slice/x", exit_code=0)
    newer["spec"]["limits"]["gpu_count"] = 1
    newer["spec"]["schedule"] = {"at": "later"}
    agent.answer(f"GET /v1/jobs/{JOB_ID}", newer)
    got = client.get(JOB_ID)
    assert got.exit_code == 0
    assert got.raw["cgroup"] == "/joblet.slice/x"
    assert got.spec.limits.raw["gpu_count"] == 1
    assert got.to_dict() == newer
    copied = got.to_dict()
    copied["spec"]["limits"]["gpu_count"] = 2  # a copy: the answer itself is not changed
    assert got.spec.limits.raw["gpu_count"] == 1


def test_fields_an_older_agent_leaves_out_get_their_defaults(
    agent: FakeAgent, client: Client
) -> None:
    older = job()
    for key in ("user", "endpoint"):
        del older[key]
    for key in ("relax", "upload", "volumes", "network", "allow_egress", "runtime"):
        del older["spec"][key]
    del older["spec"]["limits"]["work_bytes"]
    agent.answer(f"GET /v1/jobs/{JOB_ID}", older)
    got = client.get(JOB_ID)
    assert (got.user, got.endpoint) == (None, None)
    spec = got.spec
    assert (spec.relax, spec.upload, spec.volumes, spec.network) == ((), None, (), "none")
    assert (spec.allow_egress, spec.runtime, spec.limits.work_bytes) == ((), None, None)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda j: j.pop("state"), "the agent's answer: job: state is missing"),
        (
            lambda j: j.update(exit_code="3"),
            "the agent's answer: job.exit_code: expected an integer, got '3'",
        ),
        (
            lambda j: j.update(exit_code=True),
            "the agent's answer: job.exit_code: expected an integer, got True",
        ),
        (
            lambda j: j.update(state="HIBERNATING"),
            "the agent's answer: job.state: expected a job state, got 'HIBERNATING'",
        ),
        (
            lambda j: j["spec"]["limits"].update(max_tasks=None),
            "the agent's answer: job.spec.limits.max_tasks: expected an integer, got None",
        ),
        (
            lambda j: j["spec"].update(args=["ok", 7]),
            "the agent's answer: job.spec.args[1]: expected a string, got 7",
        ),
        (
            lambda j: j.update(created_at="yesterday"),
            "the agent's answer: job.created_at: expected an ISO 8601 time, got 'yesterday'",
        ),
        (
            lambda j: j.update(spec=["x" * 100]),
            "the agent's answer: job.spec: expected an object, got ['" + "x" * 58 + "...",
        ),
    ],
)
def test_a_field_the_client_models_must_be_there_and_of_its_type(
    agent: FakeAgent, client: Client, change: Any, message: str
) -> None:
    bad = job()
    change(bad)
    agent.answer(f"GET /v1/jobs/{JOB_ID}", bad)
    with pytest.raises(RnxError) as refused:
        client.get(JOB_ID)
    assert refused.value.code == "bad-answer"
    assert refused.value.message == message


def test_a_bad_job_in_a_list_is_named_by_its_place(agent: FakeAgent, client: Client) -> None:
    broken = job()
    broken["spec"]["limits"]["cpu_percent"] = "half"
    agent.answer("GET /v1/jobs", {"jobs": [job(), broken], "limit": 100, "offset": 0})
    with pytest.raises(RnxError, match=r"jobs\[1\]\.spec\.limits\.cpu_percent: expected an int"):
        client.list()


def test_list_passes_its_filters(agent: FakeAgent, client: Client) -> None:
    agent.answer("GET /v1/jobs", {"jobs": [job(), job(state="FAILED")], "limit": 5, "offset": 0})
    listed = client.list(state="completed,failed", limit="5")
    assert [j.state for j in listed] == ["COMPLETED", "FAILED"]
    assert agent.requests[0][1] == "/v1/jobs?state=completed%2Cfailed&limit=5"


def test_log_events_lines_and_the_end(agent: FakeAgent, client: Client) -> None:
    stream = log_stream(["one", "two"]) + b'event: heartbeat2\ndata: {"n": 1}\n\n'
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", stream)
    events = list(client.events(JOB_ID, follow=False))
    assert [e.kind for e in events] == ["log", "log", "end"]  # `end` is the last read
    assert [e.message for e in events[:2]] == ["one", "two"]
    first = events[0]
    assert first.line is not None and (first.line.pid, first.line.priority) == (7, 6)
    assert first.cursor == "c0"
    end = events[2].end
    assert end is not None and (end.state, end.exit_code) == ("COMPLETED", 0)
    with pytest.raises(ValueError, match="'end' event has no message"):
        _ = events[2].message
    assert list(client.logs(JOB_ID, follow=False)) == ["one", "two"]


def test_an_event_kind_the_client_does_not_know_is_passed_on() -> None:
    from rnx.client.log import parse_sse_block

    event = parse_sse_block('id: c9\nevent: progress\ndata: {"done": 3}')
    assert event == LogEvent(kind="progress", cursor="c9")
    assert event is not None and event.to_dict() == {"done": 3}
    assert parse_sse_block(": a heartbeat comment") is None


def test_wait_follows_to_the_end_then_returns_the_record(agent: FakeAgent, client: Client) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}/logs", log_stream(["x"]))
    agent.answer(f"GET /v1/jobs/{JOB_ID}", job(exit_code=0))
    final = client.wait(JOB_ID)
    assert (final.state, final.exit_code) == ("COMPLETED", 0)


def test_metrics_use_snake_case_for_systemds_properties(agent: FakeAgent, client: Client) -> None:
    agent.answer(f"GET /v1/jobs/{JOB_ID}/metrics", canned.metrics(MemoryPeak=None))
    unit = client.metrics(JOB_ID).unit
    assert (unit.cpu_usage_nsec, unit.memory_current, unit.tasks_current) == (
        1234567890,
        10485760,
        3,
    )
    assert (unit.memory_peak, unit.io_read_bytes, unit.active_state) == (None, None, "active")
    ended = canned.metrics()
    ended.update(state="STOPPED", unit={})
    agent.answer(f"GET /v1/jobs/{JOB_ID}/metrics", ended)
    assert client.metrics(JOB_ID).unit.tasks_current is None


def test_the_other_resources_are_typed(agent: FakeAgent, client: Client) -> None:
    agent.answer("GET /v1/volumes", {"volumes": [canned.volume()]})
    agent.answer("GET /v1/networks/quiet", canned.network(internal=True, gateway=None, jobs=[]))
    agent.answer("GET /v1/networks", {"networks": [canned.network()]})
    agent.answer("GET /v1/runtimes", {"architecture": "arm64", "runtimes": []})
    agent.answer("GET /v1/runtimes/python-3.11", canned.runtime())
    agent.answer("GET /v1/health", canned.health())
    agent.answer("DELETE /v1/volumes/data", {"deleted": "data"})
    agent.answer("DELETE /v1/jobs", {"deleted": 3, "skipped_running": 1})

    [data] = client.volumes()
    assert isinstance(data, Volume) and (data.name, data.used_bytes, data.jobs) == (
        "data",
        4096,
        (JOB_ID,),
    )
    quiet = client.network("quiet")
    assert isinstance(quiet, Network) and (quiet.gateway, quiet.jobs) == (None, ())
    [backend] = client.networks()
    assert backend.jobs[0].hostname == "answer"
    listed = client.runtimes()
    assert isinstance(listed, RuntimeList) and (listed.architecture, listed.runtimes) == (
        "arm64",
        (),
    )
    python = client.runtime("python-3.11")
    assert isinstance(python, Runtime)
    assert python.mounts[0].selective is None and python.mounts[1].selective == (
        "x86_64-linux-gnu",
    )
    assert python.source is not None and python.source.installed_at == datetime(
        2026, 12, 1, 9, tzinfo=UTC
    )
    assert python.requirements.min_memory == 268435456
    health = client.health()
    assert isinstance(health, Health) and health.host.cpus == 2
    assert health.limits.minimums.io_bps == 1024
    assert client.remove_volume("data").deleted == "data"
    assert (client.delete_all().deleted, client.delete_all().skipped_running) == (3, 1)


def test_an_agent_error_is_an_rnx_error_with_its_code_status_and_hint(
    agent: FakeAgent, client: Client
) -> None:
    agent.answer(
        "GET /v1/jobs/abcd",
        canned.error("ambiguous", "'abcd' is the start of 2 jobs", "give more of the id"),
        409,
    )
    with pytest.raises(RnxError) as refused:
        client.get("abcd")
    error = refused.value
    assert (error.code, error.status, error.hint) == ("ambiguous", 409, "give more of the id")
    assert error.message == "'abcd' is the start of 2 jobs"


def test_an_agent_out_of_reach_is_unreachable(tmp_path: Path) -> None:
    with Client(socket=str(tmp_path / "none.sock")) as client, pytest.raises(RnxError) as refused:
        client.health()
    assert refused.value.code == "unreachable"
    assert "cannot reach the Joblet agent at unix:" in refused.value.message
    assert refused.value.hint == "is joblet.socket active there? (systemctl status joblet.socket)"


def test_the_models_are_frozen_and_compare_by_their_fields() -> None:
    first = Job.from_dict(job(), "job")
    second = Job.from_dict(copy.deepcopy(job(extra="ignored")), "job")
    assert first == second  # raw is not compared
    with pytest.raises(AttributeError):
        first.state = JobState.FAILED  # type: ignore[misc]


def test_rnx_exports_the_client_and_its_models_lazily() -> None:
    from rnx import client as package

    for name in package.__all__:
        assert getattr(package, name).__name__ == name
        assert getattr(rnx, name) is getattr(package, name)
    assert set(package.__all__) == set(package._HOMES)
    assert rnx.Client is Client
    assert rnx.Job is Job
    assert rnx.RnxError is RnxError
    with pytest.raises(AttributeError):
        _ = rnx.Nothing
