"""A stand-in for the agent's HTTP API on a Unix socket, for rnx's unit tests: canned answers
(as docs/openapi.yaml shapes them) per "METHOD /path", and a recording of what rnx sent.

It speaks HTTP/1.1 like the agent does, so rnx's whole path runs: wire, client, CLI.
"""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

JOB_ID = "0b5c3b0e-7d4c-4a57-9e0f-3b0d4c7a1e21"


def job(**changes: Any) -> dict[str, Any]:
    """A job record as GET /v1/jobs/{id} answers it; changes replace top-level fields, and
    `args`, `name` the spec's."""
    spec = {
        "command": "python3",
        "args": ["-c", "print(42)"],
        "env": {"GREETING": "hello"},
        "secret_env": {"TOKEN": "***"},
        "workdir": None,
        "relax": [],
        "name": "answer",
        "limits": {
            "cpu_percent": 50,
            "memory_bytes": 268435456,
            "io_read_bps": None,
            "io_write_bps": None,
            "cpu_cores": None,
            "max_tasks": 512,
            "timeout_sec": 60.0,
            "work_bytes": None,
        },
        "upload": None,
        "volumes": [{"name": "data", "read_only": True}],
        "network": "none",
        "allow_egress": [],
        "runtime": None,
    }
    for key in ("args", "name"):
        if key in changes:
            spec[key] = changes.pop(key)
    record = {
        "id": JOB_ID,
        "unit": f"joblet-job-{JOB_ID}.service",
        "spec": spec,
        "state": "COMPLETED",
        "owner": "unix:root",
        "created_at": "2026-12-04T10:11:12.345678+00:00",
        "started_at": "2026-12-04T10:11:12.400000+00:00",
        "ended_at": "2026-12-04T10:11:13.500000+00:00",
        "exit_code": 0,
        "signal": None,
        "result": "success",
        "reason": None,
        "stop_requested": False,
        "warnings": [],
        "user": "joblet-u0",
        "endpoint": None,
        "redacted": False,
    }
    record.update(changes)
    return record


def metrics(**unit: Any) -> dict[str, Any]:
    """GET /v1/jobs/{id}/metrics of a running job; unit replaces systemd's properties."""
    properties = {
        "CPUUsageNSec": 1234567890,
        "MemoryCurrent": 10485760,
        "TasksCurrent": 3,
        "ActiveState": "active",
        "SubState": "running",
    }
    return {"id": JOB_ID, "state": "RUNNING", "unit": {**properties, **unit}}


def volume(**changes: Any) -> dict[str, Any]:
    return {
        "name": "data",
        "type": "filesystem",
        "size_bytes": 1073741824,
        "slot": 1,
        "created_at": "2026-12-01T09:08:07.654321+00:00",
        "created_by": "unix:root",
        "owner": "unix:root",
        "shares": [{"owner": "cert:alice", "read_only": True}],
        "used_bytes": 4096,
        "jobs": [JOB_ID],
        "mounted": True,
        "persistent": True,
        **changes,
    }


def network(**changes: Any) -> dict[str, Any]:
    attached = {
        "id": JOB_ID,
        "name": "answer",
        "network": "backend",
        "address": "10.42.0.2",
        "hostname": "answer",
        "link": "jv0b5c3b0e",
    }
    return {
        "name": "backend",
        "cidr": "10.42.0.0/24",
        "internal": False,
        "bridge": "jb-backend",
        "gateway": "10.42.0.1",
        "created_by": "unix:root",
        "created_at": "2026-12-01T09:00:00+00:00",
        "owner": "unix:root",
        "shares": [],
        "jobs": [attached],
        **changes,
    }


def runtime_summary(**changes: Any) -> dict[str, Any]:
    return {
        "name": "python-3.11",
        "language": "python",
        "version": "3.11",
        "release": "1.0.0",
        "description": "Python 3.11",
        "architectures": ["amd64"],
        "relax": [],
        "sha256": "a" * 64,
        **changes,
    }


def runtime(**changes: Any) -> dict[str, Any]:
    """GET /v1/runtimes/{name}: a runtime.yml as the agent reads it, where it is, who uses it."""
    mounts = [
        {"source": "usr", "target": "/usr", "readonly": True, "selective": None},
        {"source": "lib", "target": "/lib", "readonly": True, "selective": ["x86_64-linux-gnu"]},
    ]
    source = {
        "registry": "https://r.example/registry.json",
        "archive": "https://r.example/p.tar.gz",
        "insecure": False,
        "installed_by": "root",
        "installed_at": "2026-12-01T09:00:00+00:00",
    }
    return {
        **runtime_summary(),
        "type": "system",
        "mounts": mounts,
        "environment": {"PYTHONHOME": "/usr"},
        "path_prepend": ["/usr/bin"],
        "requirements": {"min_memory": 268435456, "recommended_memory": None},
        "packages": ["pypi:numpy 1.26"],
        "smoke_test": ["python3", "-c", "pass"],
        "directory": "/var/lib/joblet/runtimes/python/python-3.11",
        "jobs": [JOB_ID],
        "source": source,
        **changes,
    }


def health(**changes: Any) -> dict[str, Any]:
    host = {
        "cpus": 2,
        "memory_bytes": 2 << 30,
        "systemd_version": 252,
        "cgroup_mode": "unified",
        "controllers": ["cpu", "memory", "io", "pids"],
        "io_device": "8:0",
    }
    minimums = {
        "cpu_percent": 1,
        "memory_bytes": 4194304,
        "io_bps": 1024,
        "max_tasks": 8,
        "work_bytes": 16777216,
    }
    return {
        "status": "ok",
        "version": "0.1.0",
        "host": host,
        "unenforceable_limits": [],
        "limits": {"minimums": minimums},
        **changes,
    }


def error(code: str, message: str, hint: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "hint": hint}


def log_stream(lines: list[str], end: dict[str, Any] | None = None) -> bytes:
    """The text/event-stream of a job's log: its lines, then the `end` event."""
    events = [
        f"id: c{n}\nevent: log\ndata: "
        + json.dumps({"message": line, "pid": 7, "priority": 6, "timestamp_us": n})
        + "\n\n"
        for n, line in enumerate(lines)
    ]
    final = end or {"id": JOB_ID, "state": "COMPLETED", "exit_code": 0, "signal": None}
    events.append(f"event: end\ndata: {json.dumps({'reason': None, **final})}\n\n")
    return "".join(events).encode()


@dataclass
class FakeAgent:
    socket: str
    answers: dict[str, tuple[int, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)

    def answer(self, route: str, body: Any, status: int = 200) -> None:
        """route: "GET /v1/jobs" (the query is not part of it); body: JSON data, or bytes sent
        as an event stream."""
        self.answers[route] = (status, body)


def _handler(agent: FakeAgent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            sent = json.loads(self.rfile.read(length)) if length else None
            path = self.path.split("?", 1)[0]
            agent.requests.append((self.command, self.path, sent))
            status, body = agent.answers.get(
                f"{self.command} {path}",
                (404, error("not-found", f"no {path} here")),
            )
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            kind = "text/event-stream" if isinstance(body, bytes) else "application/json"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def address_string(self) -> str:
            return "rnx"

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def fake_agent(directory: Path) -> Iterator[FakeAgent]:
    agent = FakeAgent(socket=str(directory / "agent.sock"))
    server = _Server(agent.socket, _handler(agent))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
