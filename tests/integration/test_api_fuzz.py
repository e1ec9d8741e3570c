"""Every operation of docs/openapi.yaml fuzzed against the live agent with Schemathesis.

The operations come from the document (`@SCHEMA.parametrize()`: a route added there is fuzzed
without a line here). Each gets FUZZ_EXAMPLES generated requests, schema-valid and not, sent
with an admin certificate of this module's own over mutual TLS; half of the path parameters name
things that exist (POOL). Every answer must be no 5xx, have a documented status and content type,
and a body (each SSE event, for the log stream) that fits the document's schema for it. The agent
must serve through all of it without a restart, and the test leaves nothing it made behind.

Bounded in time: 50 requests per operation by default (about 1,400 requests, 30-60 s in the
sandbox for 27 operations), no shrinking (the failing example is reported as generated), no
example database. `FUZZ_EXAMPLES=200` for a longer run by hand (150: 4,200 requests, 90 s).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from joblet_agent.pki.store import Pki
from tests.integration.conftest import sh, unit_property
from tests.integration.test_control_plane import ADDRESS, journal_cursor, pki  # noqa: F401 (fixture)
from tests.runtime_kit import runtime_archive
from tests.unit.test_openapi import DOCUMENT

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))
ANSWERED: Counter[str] = Counter()  # "POST /v1/jobs -> 201": how often (shown with -s)
ENDED = ("COMPLETED", "FAILED", "STOPPED", "CANCELED", "TIMEOUT")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schemathesis.serializer("application/x-tar")
def _tar_stream(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    """Uploads take a tar stream; Schemathesis has no serializer for it. The generated body
    (`format: binary`) goes as it is: the agent must refuse what is not a tar, never fail."""
    if isinstance(value, bytes):
        return value
    return str(value).encode(errors="surrogateescape")


SCHEMA = schemathesis.openapi.from_path(DOCUMENT)
SCHEMA.config.update(base_url="https://localhost:50051", request_timeout=90)
# Things that exist, by the collection their paths start with (filled by the fuzzer fixture):
# a path parameter is drawn from them half the time, so the fuzzer reaches past the lookup.
POOL: dict[str, list[str]] = {}


@SCHEMA.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: dict[str, object]
) -> st.SearchStrategy[dict[str, object]]:
    operation = context.operation
    collection = "/".join(operation.path.split("/")[:3]) if operation else ""
    known = POOL.get(collection, [])
    if not path_parameters or not known:
        return st.just(path_parameters)
    return st.fixed_dictionaries(
        {
            key: st.one_of(st.just(value), st.sampled_from(known))
            for key, value in path_parameters.items()
        }
    )


@dataclass(frozen=True)
class Fuzzer:
    """The fuzzer's admin certificate, and plain JSON calls with it: the fixtures speak the
    document's API, not rnx's client, so this module also runs against another agent version."""

    name: str
    cert: tuple[str, str]
    ca: str

    def call(self, method: str, path: str, body: object = None, *, data: bytes | None = None,
             content_type: str = "application/json") -> Any:  # fmt: skip
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(*self.cert)
        conn = http.client.HTTPSConnection("localhost", 50051, context=context, timeout=90)
        try:
            payload = json.dumps(body).encode() if body is not None else data
            headers = {"Content-Type": content_type} if payload is not None else {}
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            answer = response.read()
        finally:
            conn.close()
        assert response.status < 300, (method, path, response.status, answer[:300])
        return json.loads(answer)

    def state(self) -> tuple[set[str], set[str], set[str], str]:
        return (
            {v["name"] for v in self.call("GET", "/v1/volumes")["volumes"]},
            {n["name"] for n in self.call("GET", "/v1/networks")["networks"]},
            {r["name"] for r in self.call("GET", "/v1/runtimes")["runtimes"]},
            unit_property("joblet.service", "MainPID"),
        )

    def job(self, *argv: str) -> str:
        return str(
            self.call("POST", "/v1/jobs", {"command": argv[0], "args": list(argv[1:])})["id"]
        )

    def ended(self, job_id: str) -> None:
        deadline = time.monotonic() + 30
        while self.call("GET", f"/v1/jobs/{job_id}")["state"] not in ENDED:
            assert time.monotonic() < deadline, f"job {job_id} did not end"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def fuzzer(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzer]:  # noqa: F811
    """An admin certificate of the module's own; afterwards the agent is the same process and
    what the fuzzer made is gone."""
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("fuzz")
    bundle = pki.issue_client(name, "admin", out_dir=tmp, address=ADDRESS).parent
    me = Fuzzer(
        name, (str(bundle / "client.crt"), str(bundle / "client.key")), str(bundle / "ca.crt")
    )
    *before, agent = me.state()
    cursor = journal_cursor()
    try:
        fill_the_pool(me, tmp)
        yield me
    finally:
        for job in me.call("GET", f"/v1/jobs?owner={name}&limit=1000")["jobs"]:
            if job["state"] not in ENDED:
                with contextlib.suppress(AssertionError):  # it may end meanwhile
                    me.call("POST", f"/v1/jobs/{job['id']}/stop")
                me.ended(job["id"])
        *after, agent_after = me.state()
        collections = ("volumes", "networks", "runtimes")
        for collection, had, has in zip(collections, before, after, strict=True):
            for thing in has - had:
                me.call("DELETE", f"/v1/{collection}/{thing}")
        # Its schedules (the pool's, and those it made): their timers are PID 1's until deleted.
        for schedule in me.call("GET", f"/v1/schedules?owner={name}")["schedules"]:
            me.call("DELETE", f"/v1/schedules/{schedule['id']}")
    print(f"\n{sum(ANSWERED.values())} requests:", *sorted(ANSWERED.items()), sep="\n  ")
    assert agent_after == agent, "the agent restarted while it was fuzzed"
    # No error of the agent's own: a traceback, or a task that raised with nobody to hear it
    # (api-fuzz 11: a job deleted before its end was handled); malformed requests are one
    # warning line (api-fuzz 12).
    log = sh(
        "journalctl", "--no-pager", "-o", "cat", "-u", "joblet.service", "--after-cursor", cursor
    )
    for sign in ("Traceback (most recent call last)", "Task exception was never retrieved"):
        assert sign not in log, log[log.index(sign) - 500 : log.index(sign) + 2000]


def fill_the_pool(me: Fuzzer, tmp: Path) -> None:
    """Jobs of the fuzzer's (running and ended; ids whole and as 8-character prefixes), one of
    its uploads (sent: empty), a volume, a network, a runtime and a schedule."""
    jobs = [me.job("sleep", "600"), me.job("sleep", "600"), me.job("true")]
    me.ended(jobs[-1])
    upload = me.call("POST", "/v1/uploads", {"bytes": 0, "entries": 0})["id"]
    me.call("PUT", f"/v1/uploads/{upload}", data=bytes(1024), content_type="application/x-tar")
    tag = f"fuzz-{uuid.uuid4().hex[:6]}"
    me.call("POST", "/v1/volumes", {"name": tag, "size": "16M", "type": "memory"})
    me.call("POST", "/v1/networks", {"name": tag, "cidr": "10.81.0.0/24"})
    data, sha, size = runtime_archive(tmp, tag)
    me.call("PUT", f"/v1/runtimes/{tag}?size={size}&sha256={sha}", data=data,
            content_type="application/octet-stream")  # fmt: skip
    POOL["/v1/jobs"] = jobs + [j[:8] for j in jobs]
    POOL["/v1/uploads"] = [upload]
    # A schedule that does not fire while the module runs (once a year).
    schedule = {"calendar": "*-01-01 03:00:00", "name": tag, "job": {"command": "true"}}
    POOL["/v1/schedules"] = [me.call("POST", "/v1/schedules", schedule)["id"], tag]
    POOL["/v1/volumes"] = POOL["/v1/networks"] = POOL["/v1/runtimes"] = [tag]


@pytest.mark.timeout(900)
@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_route_answers_as_documented(case: schemathesis.Case[Any], fuzzer: Fuzzer) -> None:
    response = case.call(cert=fuzzer.cert, verify=fuzzer.ca)
    ANSWERED[f"{case.operation.label} -> {response.status_code}"] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_document_is_the_one_fuzzed() -> None:
    assert Path(DOCUMENT).name == "openapi.yaml"
    assert len(list(SCHEMA.get_all_operations())) >= 27


def test_a_request_that_is_not_http_is_a_json_400_in_one_log_line(fuzzer: Fuzzer) -> None:
    """A NUL in a header (Schemathesis' own probe) and a request line over 8190 bytes: answered
    with the API's JSON Error body, logged as one warning line with no traceback."""
    cursor = journal_cursor()
    context = ssl.create_default_context(cafile=fuzzer.ca)
    context.load_cert_chain(*fuzzer.cert)
    for head in (
        b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Probe: a\x00b\r\n\r\n",
        b"GET /v1/jobs?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ):
        with (
            socket.create_connection(("localhost", 50051), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(head)
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        status, _, rest = answer.partition(b"\r\n")
        headers, _, body = rest.partition(b"\r\n\r\n")
        assert status.split()[1] == b"400", answer[:300]
        assert b"application/json" in headers.lower(), answer[:300]
        error = json.loads(body)
        assert error["code"] == "invalid" and error["message"].startswith(
            "the request is not valid HTTP"
        )
    deadline = time.monotonic() + 15  # journald's pace
    while True:
        log = sh(
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "-u",
            "joblet.service",
            "--after-cursor",
            cursor,
        )
        if log.count("malformed HTTP request from") >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert log.count("malformed HTTP request from") == 2, log
    assert "Traceback" not in log, log
