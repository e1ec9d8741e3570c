"""docs/openapi.yaml is valid OpenAPI 3.0 and describes exactly the app's routes, roles and shapes.

The helpers here (document, json_schema, response_schema, validate) turn the document's schemas into
JSON Schema; the live test in tests/integration uses them against the real agent.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import aiohttp
import jsonschema
import openapi_spec_validator
import pytest
import yaml
from aiohttp import web

from joblet_agent.adapters.clock import SystemClock
from joblet_agent.adapters.job_store import SqliteJobStore
from joblet_agent.adapters.network_files import NetworkDirectories
from joblet_agent.adapters.network_store import SqliteNetworkStore
from joblet_agent.adapters.resolver import resolve_ipv4
from joblet_agent.api.errors import HTTP_STATUS
from joblet_agent.api.roles import ROUTE_ACTIONS
from joblet_agent.domain.config import Access, AgentConfig, JobPolicy
from joblet_agent.domain.job import JobRecord, JobSpec, JobState, Limits
from joblet_agent.domain.jobspec import parse_job_request
from joblet_agent.domain.rbac import REQUIRED, Action, Role
from joblet_agent.errors import ErrorCode, JobletError
from joblet_agent.services.job.service import JobService
from joblet_agent.services.network import NetworkService
from tests.unit.fakes import FakeCalendar, FakeSystemd
from tests.unit.hosts import HYBRID_HOST
from tests.unit.wiring import api_app, job_service

DOCUMENT = Path(__file__).parents[2] / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Which rbac action each operation is authorized as (api/roles.py, the table the agent checks):
# the document's x-joblet-role must be its role.
OPERATIONS: dict[tuple[str, str], Action] = {
    route: actions[0] for route, actions in ROUTE_ACTIONS.items()
}


# -- helpers, shared with tests/integration/test_openapi_live.py ----------------------------------


@cache
def document() -> dict[str, Any]:
    data = yaml.safe_load(DOCUMENT.read_text())
    assert isinstance(data, dict)
    return data


def resolve(ref: str) -> dict[str, Any]:
    """A local reference like '#/components/schemas/Job'."""
    assert ref.startswith("#/"), f"only local references are supported: {ref}"
    node: Any = document()
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, dict)
    return node


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI 3.0 schema as a self-contained JSON Schema: references inlined, `nullable: true`
    as "or null", OpenAPI-only keywords dropped."""
    if "$ref" in schema:  # in 3.0 a reference's siblings are ignored
        return json_schema(resolve(schema["$ref"]))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("nullable", "example", "discriminator", "xml", "externalDocs", "deprecated"):
            continue
        if key.startswith("x-"):
            continue
        if key == "properties":
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = json_schema(value)
        elif key in ("allOf", "oneOf", "anyOf"):
            out[key] = [json_schema(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def operation(method: str, path: str) -> dict[str, Any]:
    op = document()["paths"][path][method.lower()]
    assert isinstance(op, dict)
    return op


def response_schema(
    method: str, path: str, status: int, media: str = "application/json"
) -> dict[str, Any]:
    """The JSON Schema of the body that `method path` documents for `status`."""
    responses = operation(method, path)["responses"]
    assert str(status) in responses, f"{method} {path} documents no {status} response"
    response = responses[str(status)]
    if "$ref" in response:
        response = resolve(response["$ref"])
    return json_schema(response["content"][media]["schema"])


def _uuid(text: object) -> bool:
    import uuid

    return not isinstance(text, str) or str(uuid.UUID(text)) == text.lower()


def _date_time(text: object) -> bool:
    # RFC 3339 needs a date, a time and an offset.
    return not isinstance(text, str) or (
        "T" in text and datetime.fromisoformat(text).tzinfo is not None
    )


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("uuid", raises=ValueError)(_uuid)
FORMATS.checks("date-time", raises=ValueError)(_date_time)


def validate(instance: object, schema: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless `instance` fits. Draft 4 is closest to OpenAPI 3.0's
    dialect (boolean exclusiveMinimum)."""
    jsonschema.Draft4Validator(schema, format_checker=FORMATS).validate(instance)


def schema_of(name: str) -> dict[str, Any]:
    return json_schema({"$ref": f"#/components/schemas/{name}"})


# -- the document on its own ----------------------------------------------------------------------


def test_document_is_valid_openapi_3_0() -> None:
    assert document()["openapi"] == "3.0.3"
    openapi_spec_validator.validate(document(), cls=openapi_spec_validator.OpenAPIV30SpecValidator)


def _documented() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in document()["paths"].items()
        for method, op in item.items()
        if method in METHODS
    }


def test_error_codes_and_states_are_the_codes() -> None:
    assert schema_of("Error")["properties"]["code"]["enum"] == [str(c) for c in ErrorCode]
    assert schema_of("JobState")["enum"] == [str(s) for s in JobState]


def test_every_error_response_is_an_error_body_with_a_status_the_api_uses() -> None:
    statuses = set(HTTP_STATUS.values())
    for (method, path), op in _documented().items():
        for status in op["responses"]:
            if int(status) >= 400:
                assert int(status) in statuses, f"{method} {path}: {status}"
                assert response_schema(method, path, int(status)) == schema_of("Error")


def _objects(schema: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if "properties" in schema:
            yield where, schema
        for key, value in schema.items():
            yield from _objects(value, f"{where}.{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from _objects(value, f"{where}[{index}]")


def test_every_object_refuses_unknown_keys() -> None:
    for where, schema in _objects(document()["components"]["schemas"], "schemas"):
        assert schema.get("additionalProperties") is False, where


def test_runtime_info_is_a_runtime_and_where_it_is() -> None:
    """RuntimeInfo repeats Runtime's properties (a closed Runtime cannot be extended in 3.0)."""
    runtime, info = (
        resolve("#/components/schemas/Runtime"),
        resolve("#/components/schemas/RuntimeInfo"),
    )
    assert set(info["properties"]) == set(runtime["properties"]) | {"directory", "jobs"}
    for name, schema in runtime["properties"].items():
        assert info["properties"][name] == schema, name
    assert set(info["required"]) == set(runtime["required"]) | {
        "sha256",
        "source",
        "directory",
        "jobs",
    }


def test_request_schemas_name_the_fields_the_validator_reads() -> None:
    spec = JobSpec(command="true").to_dict(with_secrets=False)
    # When it starts is the request's, not the spec's: the record keeps it (priority, schedule).
    when = {"priority", "schedule"}
    assert set(schema_of("JobRequest")["properties"]) == set(spec) | when
    assert set(schema_of("JobSpec")["properties"]) == set(spec)
    assert set(schema_of("Limits")["properties"]) == set(Limits().to_dict())
    assert set(schema_of("AppliedLimits")["properties"]) == set(Limits().to_dict())


def test_request_example_is_valid_and_accepted() -> None:
    content = operation("POST", "/v1/jobs")["requestBody"]["content"]["application/json"]
    validate(content["example"], json_schema(content["schema"]))
    parse_job_request(content["example"], JobPolicy(), HYBRID_HOST)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": "true", "surprise": 1},
        {"command": "true", "limits": {"cpus": 1}},
        {"command": "x" * 4097},
        {"command": "true", "args": ["a"] * 1025},
        {"command": "true", "env": {"V": "v" * 32769}},
    ],
    ids=["no-command", "unknown-key", "unknown-limit", "long-command", "many-args", "long-env"],
)
def test_request_schema_refuses_what_the_server_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(body, schema_of("JobRequest"))
    with pytest.raises(JobletError):
        parse_job_request(body, JobPolicy(), HYBRID_HOST)


def test_job_record_and_error_fit_their_schemas() -> None:
    now = datetime.now(UTC)
    spec = JobSpec(
        command="sleep",
        args=("30",),
        env=MappingProxyType({"A": "b"}),
        secret_env=MappingProxyType({"TOKEN": "s3cret"}),
        limits=Limits(memory_bytes=2**20 * 64, cpu_cores=(0, 2), timeout_sec=1.5),
    )
    record = JobRecord(
        id="0b9e1d8c-6f55-4f3c-9a43-3f7d2b0d7a11",
        spec=spec,
        state=JobState.FAILED,
        owner="cert:alice",
        created_at=now,
        started_at=now,
        ended_at=now,
        exit_code=137,
        signal="SIGKILL",
        result="oom-kill",
        reason="oom-kill",
        warnings=("max_tasks: ...",),
    )
    validate(record.to_dict(), schema_of("Job"))
    with pytest.raises(jsonschema.ValidationError):  # the schema says secrets never show
        validate(record.to_dict(with_secrets=True), schema_of("Job"))
    for code in ErrorCode:
        validate(JobletError(code, "m", hint="h").to_dict(), schema_of("Error"))


# -- the document against the app ----------------------------------------------------------------


@pytest.fixture
def service(tmp_path: Path) -> JobService:
    config = AgentConfig(state_dir=tmp_path / "state", runtimes_dir=tmp_path / "runtimes")
    store = SqliteJobStore(config.database)
    networks = NetworkService(
        config,
        SqliteNetworkStore(config.database),
        store,
        files=NetworkDirectories(config.state_dir / "networks"),
        clock=SystemClock(),
        resolve=resolve_ipv4,
        python=sys.executable,
    )
    service = job_service(config, store=store, networks=networks)
    systemd = FakeSystemd(service.on_systemd_event)
    service.attach(systemd)
    networks.attach(systemd)
    return service


def test_documented_operations_are_the_routes(service: JobService) -> None:
    app = api_app(service, Access())
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert set(_documented()) == routes
    assert set(OPERATIONS) == routes


def test_every_operation_names_its_role() -> None:
    for key, op in _documented().items():
        assert op.get("x-joblet-role") == str(REQUIRED[OPERATIONS[key]]), key
        assert op["x-joblet-role"] in {str(r) for r in Role}


def test_responses_of_the_app_fit_the_document(service: JobService) -> None:
    """Through aiohttp on a Unix socket, with PID 1 and the journal faked; the caller is mapped to
    admin through its group, so this runs without root."""
    group = grp.getgrgid(os.getgid()).gr_name
    calendar = service.intake.calendar
    assert isinstance(calendar, FakeCalendar)
    calendar.elapses["*:0/15"] = [datetime(2026, 12, 4, 12, 15, tzinfo=UTC)]
    app = api_app(service, Access(local_groups=MappingProxyType({group: Role.ADMIN})))

    async def scenario(socket: str) -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.UnixSite(runner, socket).start()
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(path=socket), base_url="http://joblet"
            ) as http:
                await _exercise(http)
        finally:
            await runner.cleanup()

    with tempfile.TemporaryDirectory(prefix="joblet-") as directory:  # short: sun_path is small
        asyncio.run(scenario(f"{directory}/api.sock"))


async def _exercise(http: aiohttp.ClientSession) -> None:
    async def call(
        method: str, path: str, template: str, status: int, **kwargs: Any
    ) -> dict[str, Any]:
        async with http.request(method, path, **kwargs) as resp:
            body = await resp.json()
        assert resp.status == status, body
        validate(body, response_schema(method, template, status))
        assert isinstance(body, dict)
        return body

    job = await call("POST", "/v1/jobs", "/v1/jobs", 201, json={"command": "sleep", "args": ["9"]})
    path = f"/v1/jobs/{job['id']}"
    await call("GET", path, "/v1/jobs/{id}", 200)
    await call("GET", "/v1/jobs", "/v1/jobs", 200, params={"state": "running,completed"})
    await call("GET", path + "/metrics", "/v1/jobs/{id}/metrics", 200)
    await call("POST", path + "/cancel", "/v1/jobs/{id}/cancel", 409)
    await call("DELETE", path, "/v1/jobs/{id}", 409)
    await call("POST", path + "/stop", "/v1/jobs/{id}/stop", 200)
    await call("DELETE", path, "/v1/jobs/{id}", 200)
    await call("DELETE", "/v1/jobs", "/v1/jobs", 200)
    await call("GET", "/v1/health", "/v1/health", 200)
    await call("POST", "/v1/jobs", "/v1/jobs", 400, json={"command": "true", "limits": {"x": 1}})
    await call("GET", "/v1/jobs", "/v1/jobs", 400, params={"limit": "0"})
    await call("GET", "/v1/jobs/abc", "/v1/jobs/{id}", 400)
    await call("GET", path, "/v1/jobs/{id}", 404)
    big = {"command": "true", "args": ["x" * 2**20]}
    await call("POST", "/v1/jobs", "/v1/jobs", 413, json=big)
    # networks
    net = {"name": "backend", "cidr": "10.42.0.0/24"}
    await call("POST", "/v1/networks", "/v1/networks", 201, json=net)
    await call("POST", "/v1/networks", "/v1/networks", 409, json=net)
    await call("POST", "/v1/networks", "/v1/networks", 400, json={**net, "cidr": "8.8.8.0/24"})
    body = {"command": "sleep", "args": ["9"], "network": "backend", "name": "db"}
    on_net = await call("POST", "/v1/jobs", "/v1/jobs", 201, json=body)
    assert on_net["endpoint"]["address"] == "10.42.0.2"
    await call("POST", "/v1/jobs", "/v1/jobs", 409, json=body)  # the hostname is taken
    # An admin naming a network that does not exist gets it made (the design document's way).
    made = await call("POST", "/v1/jobs", "/v1/jobs", 201, json={**body, "network": "nowhere"})
    assert made["warnings"] == [
        "network 'nowhere' did not exist: created (10.88.0.0/24, outbound NAT)"
    ]
    listed = await call("GET", "/v1/networks", "/v1/networks", 200)
    assert listed["networks"][0]["jobs"][0]["hostname"] == "db"
    await call("GET", "/v1/networks/backend", "/v1/networks/{name}", 200)
    await call("DELETE", "/v1/networks/backend", "/v1/networks/{name}", 409)
    await call("POST", f"/v1/jobs/{on_net['id']}/stop", "/v1/jobs/{id}/stop", 200)
    await call("DELETE", "/v1/networks/backend", "/v1/networks/{name}", 200)
    await call("GET", "/v1/networks/backend", "/v1/networks/{name}", 404)
    await _exercise_runtimes(call)
    await _exercise_schedules(call)


async def _exercise_schedules(call: Any) -> None:
    body = {"calendar": "*:0/15", "name": "report", "job": {"command": "true", "priority": 7}}
    await call("POST", "/v1/schedules", "/v1/schedules", 201, json=body)
    await call("POST", "/v1/schedules", "/v1/schedules", 409, json=body)  # the name is taken
    bad = {**body, "name": "other", "calendar": "99:99"}
    refused = await call("POST", "/v1/schedules", "/v1/schedules", 400, json=bad)
    assert "Failed to parse calendar specification '99:99'" in refused["message"]
    one = "/v1/schedules/{schedule}"
    shown = await call("GET", "/v1/schedules/report", one, 200)
    assert shown["next_elapse"] == "2026-12-04T12:15:00+00:00"
    await call("GET", "/v1/schedules", "/v1/schedules", 200)
    await call("POST", "/v1/schedules/report/pause", one + "/pause", 200)
    await call("POST", "/v1/schedules/report/resume", one + "/resume", 200)
    await call("GET", "/v1/jobs", "/v1/jobs", 200, params={"schedule": "report"})
    await call("GET", "/v1/schedules/" + "x" * 70, one, 400)
    await call("DELETE", "/v1/schedules/report", one, 200)
    await call("GET", "/v1/schedules/report", one, 404)


async def _exercise_runtimes(call: Any) -> None:
    listed = await call("GET", "/v1/runtimes", "/v1/runtimes", 200)
    assert listed["runtimes"] == []
    yml = "name: demo\nversion: '1'\nmounts: [{source: bin, target: /opt/demo/bin}]\n"
    valid = "/v1/runtimes/validate"
    await call("POST", valid, valid, 200, json={"text": yml})
    await call("POST", valid, valid, 400, json={"text": "name: demo\n"})
    await call("POST", valid, valid, 413, json={"text": "#" * 300_000})
    one = "/v1/runtimes/{name}"
    await call("GET", "/v1/runtimes/demo", one, 404)
    await call("GET", "/v1/runtimes/Demo", one, 400)
    await call("GET", "/v1/runtimes/validate", one, 400)  # not a runtime's name (api-fuzz D2)
    await call("DELETE", "/v1/runtimes/demo", one, 404)
    await call("POST", "/v1/runtimes/demo/test", "/v1/runtimes/{name}/test", 404)
    await call("POST", "/v1/jobs", "/v1/jobs", 404, json={"command": "true", "runtime": "demo"})
    archive = b"not a tar archive"
    digest = hashlib.sha256(archive).hexdigest()
    query = {"size": str(len(archive)), "sha256": digest}
    await call("PUT", "/v1/runtimes/demo", one, 400, params=query, data=archive)
    await call("PUT", "/v1/runtimes/demo", one, 400, params={**query, "sha256": "x"}, data=archive)
