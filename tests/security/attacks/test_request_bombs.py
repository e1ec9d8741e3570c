"""Request bombs (security audit H6, M10; api-fuzz findings 3-8): small requests that once
blocked the event loop, grew the agent's memory without bound or ended in a 500 or a watchdog
kill. Each is now refused at once with a short 400 (or 429) naming the field, while another user
is served, and the agent is never restarted by it."""

from __future__ import annotations

import contextlib
import http.client
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from joblet_agent.domain.config import LogStreamPolicy
from rnx.client import Client
from rnx.config import resolve_target
from rnx.errors import RnxError
from rnx.tls import client_context
from tests.integration.conftest import sh
from tests.security.attacks.conftest import another_user_runs_a_job, restart_agent

pytestmark = pytest.mark.integration

# Error bodies quote a short excerpt of the value, never all of it: a refusal this long means a
# value was echoed whole (the alias bomb's answer was 25 MB from 387 bytes).
SHORT_ANSWER = 2000
# The sandbox's agent runs with joblet.yml's defaults.
STREAMS_PER_CALLER = LogStreamPolicy().max_per_caller


def request(
    config: str,
    method: str,
    path: str,
    *,
    data: bytes | None = None,
    body: Any = None,
    timeout: float = 120,
) -> tuple[int, bytes]:
    """One raw HTTPS request with a role's certificate: (status, body). A connection the agent
    dropped (it died, say) is status 0 with the reason as its body, so a test fails on it by
    name rather than with a traceback from the thread it ran in."""
    if body is not None:
        data = json.dumps(body).encode()
    conn = _connection(config, timeout)
    try:
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"no answer: {exc!r}".encode()
    finally:
        conn.close()


def _connection(config: str, timeout: float) -> http.client.HTTPSConnection:
    target = resolve_target(config_path=config, node=None, socket_path=None)
    assert target.address and target.ca and target.cert and target.key
    host, _, port = target.address.rpartition(":")
    context = client_context(target.ca, target.cert, target.key)
    return http.client.HTTPSConnection(host, int(port), timeout=timeout, context=context)


def message_of(status: int, answer: bytes) -> str:
    assert len(answer) < SHORT_ANSWER, f"HTTP {status}: a {len(answer)}-byte answer"
    data = json.loads(answer)
    assert isinstance(data, dict), answer
    return str(data["message"])


def agent_process() -> tuple[str, str]:
    """joblet.service's MainPID and NRestarts: both unchanged means the agent never died."""
    return (
        sh("systemctl", "show", "-P", "MainPID", "joblet.service").strip(),
        sh("systemctl", "show", "-P", "NRestarts", "joblet.service").strip(),
    )


def while_attacking(
    attack: Callable[..., tuple[int, bytes]], served_by: str, *args: Any, **kwargs: Any
) -> tuple[int, bytes]:
    """Send the attack from another thread, have another user run a job meanwhile (within the
    acceptance bound), and return the attack's answer."""
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(attack, *args, **kwargs)
        another_user_runs_a_job(served_by)
        return answer.result()


@pytest.fixture
def agent_memory_capped() -> Iterator[None]:
    """A regression of a memory bomb must fail its test, not the host the sandboxes share: the
    agent gets a MemoryMax for the test when its unit has none."""
    before = sh("systemctl", "show", "-P", "MemoryMax", "joblet.service").strip()
    if before != "infinity":
        yield
        return
    sh("systemctl", "set-property", "--runtime", "joblet.service", "MemoryMax=1G")
    try:
        yield
    finally:
        sh("systemctl", "set-property", "--runtime", "joblet.service", "MemoryMax=infinity")


# -- H6: a CPU range past the host's CPUs ------------------------------------------------------


def test_a_cpu_range_past_the_host_is_refused_at_once(
    certs: dict[str, str], second_developer: str, agent_memory_capped: None
) -> None:
    """0-4294967295 once built a set of 4.3 billion CPU numbers in the event loop (340 GB)."""
    before = agent_process()
    status, answer = while_attacking(
        request,
        second_developer,
        certs["developer"],
        "POST",
        "/v1/jobs",
        body={"command": "true", "limits": {"cpu_cores": "0-4294967295"}},
    )
    assert status == 400, answer[:300]
    message = message_of(status, answer)
    assert message.startswith("limits.cpu_cores: '0-4294967295' is not valid"), message
    assert "does not exist; this host has" in message, message
    assert agent_process() == before


# -- H6: a reader's YAML alias bomb -------------------------------------------------------------


def alias_bomb(depth: int) -> str:
    """api-fuzz finding 2: nine references per level, `depth` levels; `packages` is the top.
    Expanded (by repr() in an error message) it is 9**depth values: depth 8 killed the agent."""
    lines = ["name: x", 'version: "1"', "x-anchors:", "  a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    lines += [f"  a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, depth + 1)]
    return "\n".join([*lines, f"packages: *a{depth}"]) + "\n"


def test_a_readers_yaml_alias_bomb_is_refused_and_the_agent_lives(
    certs: dict[str, str], second_developer: str, agent_memory_capped: None
) -> None:
    before = agent_process()
    status, answer = while_attacking(
        request,
        second_developer,
        certs["reader"],
        "POST",
        "/v1/runtimes/validate",
        body={"text": alias_bomb(8)},
    )
    assert status == 400, answer[:300]
    message = message_of(status, answer)
    assert "anchors and aliases are not allowed" in message, message
    assert agent_process() == before
    restart_agent()
    another_user_runs_a_job(second_developer)


def test_deeply_nested_yaml_is_refused(certs: dict[str, str], second_developer: str) -> None:
    text = "name: " + "[" * 1000 + "]" * 1000 + '\nversion: "1"\n'
    status, answer = while_attacking(
        request,
        second_developer,
        certs["reader"],
        "POST",
        "/v1/runtimes/validate",
        body={"text": text},
    )
    assert status == 400, answer[:300]
    assert "nested deeper than" in message_of(status, answer)


def test_a_readers_flood_of_large_runtime_ymls_does_not_stall_others(
    certs: dict[str, str], second_developer: str
) -> None:
    """256 KiB of ordinary YAML took pure-Python PyYAML 3 s, in the event loop: eight at once
    stalled every request of every user for half a minute."""
    text = "name: x\nversion: '1'\npackages:\n" + "- abcdefgh\n" * 23000 + "surprise: 1\n"
    flood = 8
    with ThreadPoolExecutor(flood) as pool:
        answers = [
            pool.submit(
                request, certs["reader"], "POST", "/v1/runtimes/validate", body={"text": text}
            )
            for _ in range(flood)
        ]
        another_user_runs_a_job(second_developer)
        results = [answer.result() for answer in answers]
    assert [status for status, _ in results] == [400] * flood, results[0][1][:300]
    assert "surprise: unknown key" in message_of(*results[0])


# -- JSON bodies: depth, encoding, numbers -------------------------------------------------------


def test_deeply_nested_json_is_refused(certs: dict[str, str], second_developer: str) -> None:
    data = b'{"command": "true", "args": ' + b"[" * 20000 + b"]" * 20000 + b"}"
    status, answer = while_attacking(
        request, second_developer, certs["developer"], "POST", "/v1/jobs", data=data
    )
    assert status == 400, answer[:300]
    assert "request body: nested deeper than" in message_of(status, answer)


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("developer", "/v1/jobs"),
        ("developer", "/v1/uploads"),
        ("reader", "/v1/runtimes/validate"),
        ("admin", "/v1/volumes"),
        ("admin", "/v1/networks"),
    ],
)
def test_a_body_that_is_not_utf8_is_a_400(certs: dict[str, str], role: str, path: str) -> None:
    status, answer = request(certs[role], "POST", path, data=b'{"command": "\xff"}')
    assert status == 400, answer[:300]
    assert "request body: not UTF-8" in message_of(status, answer)


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (b'{"timeout_sec": NaN}', "request body"),
        (b'{"timeout_sec": Infinity}', "request body"),
        (b'{"timeout_sec": 1e400}', "request body"),
        (b'{"memory_bytes": ' + b"9" * 400 + b"}", "request body"),
        (b'{"memory_bytes": "' + b"9" * 400 + b'"}', "limits.memory_bytes"),
        (b'{"io_write_bps": "' + b"9" * 400 + b'"}', "limits.io_write_bps"),
        (b'{"timeout_sec": "' + b"9" * 400 + b's"}', "limits.timeout_sec"),
    ],
)
def test_numbers_that_are_not_finite_or_too_long_are_a_400(
    certs: dict[str, str], limits: bytes, field: str
) -> None:
    data = b'{"command": "true", "limits": ' + limits + b"}"
    status, answer = request(certs["developer"], "POST", "/v1/jobs", data=data)
    assert status == 400, answer[:300]
    assert message_of(status, answer).startswith(field)


@pytest.mark.parametrize(
    "query",
    ["offset=99999999999999999999", "limit=%C2%B2", "offset=%C2%B2", "limit=%D9%A3"],
)
def test_query_numbers_are_ascii_digits_within_bounds(certs: dict[str, str], query: str) -> None:
    status, answer = request(certs["reader"], "GET", f"/v1/jobs?{query}")
    assert status == 400, answer[:300]
    assert message_of(status, answer).startswith(query.partition("=")[0] + ": ")


# -- the audit trail says what was answered (finding 9) ----------------------------------------


def audit_statuses(caller: str) -> list[str]:
    out = sh(
        "journalctl",
        "--no-pager",
        "-o",
        "json",
        "SYSLOG_IDENTIFIER=joblet-agent",
        "AUDIT=1",
        f"AUDIT_CALLER={caller}",
        "--output-fields=AUDIT_STATUS",
        check=False,
    )
    return [json.loads(line)["AUDIT_STATUS"] for line in out.splitlines()]


def common_name(config: str) -> str:
    pem = (Path(config).parent / "client.crt").read_bytes()
    name = x509.load_pem_x509_certificate(pem).subject
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_audit_trail_records_the_status_answered(certs: dict[str, str]) -> None:
    caller = f"cert:{common_name(certs['admin'])}"
    answered = [
        request(certs["admin"], "POST", "/v1/volumes", data=b"{")[0],
        request(certs["admin"], "PATCH", "/v1/health")[0],
        request(certs["admin"], "POST", "/v1/volumes", data=b" " * (2 * 1024 * 1024))[0],
    ]
    assert answered == [400, 405, 413]
    sh("journalctl", "--sync")
    assert audit_statuses(caller)[-3:] == ["400", "405", "413"]


# -- M10: log streams ------------------------------------------------------------------------


def open_stream(config: str, job_id: str) -> tuple[http.client.HTTPSConnection, int, bytes]:
    """A following log stream, left open: (its connection, status, the error body if refused)."""
    conn = _connection(config, 30)
    conn.request("GET", f"/v1/jobs/{job_id}/logs?follow=1", headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    return conn, response.status, b"" if response.status == 200 else response.read()


def test_one_owner_cannot_hold_every_log_stream(
    certs: dict[str, str], second_developer: str
) -> None:
    with Client(config=certs["developer"]) as attacker:
        job = attacker.run(["sleep", "300"])
        held: list[http.client.HTTPSConnection] = []
        try:
            for _ in range(STREAMS_PER_CALLER):
                conn, status, answer = open_stream(certs["developer"], job.id)
                held.append(conn)
                assert status == 200, answer[:300]
            conn, status, answer = open_stream(certs["developer"], job.id)
            held.append(conn)
            assert status == 429, f"stream {STREAMS_PER_CALLER + 1}: HTTP {status}"
            message = message_of(status, answer)
            assert f"{STREAMS_PER_CALLER} log streams" in message, message
            # Another user still gets a stream (of a job of theirs), and runs a job.
            with Client(config=second_developer) as other:
                theirs = other.run(["true"])
            conn, status, answer = open_stream(second_developer, theirs.id)
            held.append(conn)
            assert status == 200, answer[:300]
            another_user_runs_a_job(second_developer)
        finally:
            for conn in held:
                conn.close()
            with contextlib.suppress(RnxError):
                attacker.stop(job.id)
    restart_agent()
    another_user_runs_a_job(second_developer)
