"""The Python client for the Joblet API, synchronous, on the standard library's http.client.

Programs and AI agents use Client; the CLI uses it too, so there is one implementation of the wire.
"""

from __future__ import annotations

import builtins
import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from rnx.config import ConfigError, resolve_target
from rnx.errors import RnxError
from rnx.wire import Wire, read_json, sse_blocks

RECONNECT_WINDOW_SEC = 60.0  # how long a follower waits for a restarting agent


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One Server-Sent Event of a job's log stream: a line, or the end with the final state."""

    kind: str  # "log" or "end"
    data: dict[str, Any]
    cursor: str | None


def parse_sse_block(block: str) -> LogEvent | None:
    """One Server-Sent Event (the lines between blank lines); comments alone give None."""
    kind, cursor = "message", None
    data_lines: list[str] = []
    for line in block.split("\n"):
        field, _, value = line.partition(": ")
        if field == "event":
            kind = value
        elif field == "data":
            data_lines.append(value)
        elif field == "id":
            cursor = value
    if not data_lines:
        return None
    return LogEvent(kind, json.loads("\n".join(data_lines)), cursor)


def _during_handshake(exc: BaseException) -> bool:
    """A refused client certificate looks like a reset or an EOF, not a refused connect."""
    if isinstance(exc, ConnectionRefusedError | FileNotFoundError | socket.gaierror):
        return False
    return isinstance(exc, ssl.SSLError | ConnectionError | http.client.RemoteDisconnected)


def _answered_error(data: Any, status: int, reason: str | None) -> RnxError:
    if not isinstance(data, dict):
        return RnxError("error", f"HTTP {status} {reason or ''}".strip(), None, status)
    return RnxError(
        data.get("code", "error"), data.get("message", reason or ""), data.get("hint"), status
    )


class Client:
    """Synchronous client. `Client()` uses ~/.rnx/rnx-config.yml's default node if there is one,
    else the local agent's socket; `Client(node="web1")`, `Client(config="path")` or
    `Client(socket="/run/joblet/joblet.sock")` choose."""

    def __init__(
        self, *, socket: str | None = None, config: str | None = None, node: str | None = None
    ) -> None:
        try:
            self.target = resolve_target(config_path=config, node=node, socket_path=socket)
        except ConfigError as exc:
            raise RnxError("config", str(exc)) from exc
        self._wire = Wire(self.target)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._wire.close()

    def _call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        return self._answer(lambda: self._wire.send(method, path, body=body, params=params))

    def _put_stream(self, path: str, chunks: Iterable[bytes], *, content_type: str) -> Any:
        """PUT a body made as it goes (an upload, a runtime archive)."""
        return self._answer(
            lambda: self._wire.send_stream("PUT", path, chunks, content_type=content_type)
        )

    def _answer(self, send: Callable[[], http.client.HTTPResponse]) -> Any:
        """The JSON answer of one request; an error answered or met on the way raised."""
        try:
            response = send()
            data = read_json(response)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        if response.status >= 400:
            raise _answered_error(data, response.status, response.reason)
        return data

    def _unreachable(self, exc: BaseException) -> RnxError:
        from rnx.tls import diagnose, explain

        where = self.target.describe()
        meaning = explain(exc)
        if meaning is None and self.target.address and _during_handshake(exc):
            meaning = diagnose(self.target)
        if meaning:
            return RnxError("unauthenticated", f"TLS with {where} failed: {meaning}")
        return RnxError(
            "unreachable",
            f"cannot reach the Joblet agent at {where}: {exc}",
            "is joblet.socket active there? (systemctl status joblet.socket)",
        )

    def run(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        name: str | None = None,
        workdir: str | None = None,
        relax: Sequence[str] = (),
        uploads: Sequence[str] = (),
        upload_dirs: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
        volumes: Sequence[str] = (),
        network: str | None = None,
        allow_egress: Sequence[str] = (),
        runtime: str | None = None,
        **limits: Any,
    ) -> dict[str, Any]:
        """Start a job; limits are the API's names (cpu_percent, memory_bytes, timeout_sec, ...).

        uploads (files, to /work/<name>) and upload_dirs (to /work/<dirname>/...) are sent
        first; progress(sent, total) is called as their bytes go. volumes: NAME or NAME:ro.
        network: none (default), isolated, host (admin only) or a network's name."""
        body: dict[str, Any] = {"command": command[0], "args": list(command[1:])}
        upload = self.upload(uploads, upload_dirs, progress) if uploads or upload_dirs else None
        for key, value in (
            ("env", env),
            ("secret_env", secret_env),
            ("name", name),
            ("workdir", workdir),
            ("relax", list(relax)),
            ("upload", upload),
            ("volumes", [_volume_mount(v) for v in volumes]),
            ("network", network),
            ("allow_egress", list(allow_egress)),
            ("runtime", runtime),
        ):
            if value:
                body[key] = value
        if limits:
            body["limits"] = limits
        return dict(self._call("POST", "/v1/jobs", body=body))

    def upload(
        self,
        files: Sequence[str],
        directories: Sequence[str] = (),
        progress: Callable[[int, int], None] | None = None,
    ) -> str:
        """Announce, then stream files and directories for a job; the upload's id, for run()."""
        from rnx import uploads  # tarfile and all: only when there is something to send

        plan = uploads.plan(files, directories)
        total = plan.bytes
        announced = self._call(
            "POST", "/v1/uploads", body={"bytes": total, "entries": len(plan.entries)}
        )
        upload_id = str(announced["id"])
        chunks = uploads.stream(plan, None if progress is None else lambda n: progress(n, total))
        self._put_stream(f"/v1/uploads/{upload_id}", chunks, content_type="application/x-tar")
        return upload_id

    def create_volume(self, name: str, *, size: str, type: str = "filesystem") -> dict[str, Any]:
        return dict(
            self._call("POST", "/v1/volumes", body={"name": name, "size": size, "type": type})
        )

    def volumes(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/volumes")["volumes"])

    def remove_volume(self, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/volumes/{name}"))

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}"))

    def list(self, **filters: str) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/jobs", params=filters)["jobs"])

    def stop(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/jobs/{job_id}/stop"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def delete(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/jobs/{job_id}"))

    def delete_all(self) -> dict[str, Any]:
        return dict(self._call("DELETE", "/v1/jobs"))

    def metrics(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}/metrics"))

    def create_network(self, name: str, cidr: str, *, internal: bool = False) -> dict[str, Any]:
        body = {"name": name, "cidr": cidr, "internal": internal}
        return dict(self._call("POST", "/v1/networks", body=body))

    def networks(self) -> builtins.list[dict[str, Any]]:
        """Every network with its CIDR and the live jobs on it."""
        return builtins.list(self._call("GET", "/v1/networks")["networks"])

    def network(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/networks/{name}"))

    def remove_network(self, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/networks/{name}"))

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/health"))

    # -- runtimes ---------------------------------------------------------------------------

    def runtimes(self) -> dict[str, Any]:
        """{"architecture": ..., "runtimes": [...]}: what the agent has installed."""
        return dict(self._call("GET", "/v1/runtimes"))

    def runtime(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/runtimes/{name}"))

    def install_runtime(
        self,
        name: str,
        chunks: Iterable[bytes],
        *,
        size: int,
        sha256: str,
        registry: str | None = None,
        archive: str | None = None,
        insecure: bool = False,
    ) -> dict[str, Any]:
        """Stream an archive (already checked against size and the registry index's sha256) to
        the agent, which checks it again, unpacks it safely and moves it into place. registry
        and archive (URLs or paths) are recorded with the runtime; insecure says they may be
        plain http://, which the agent allows admins only."""
        query = {"size": str(size), "sha256": sha256}
        query |= {k: v for k, v in (("registry", registry), ("archive", archive)) if v}
        if insecure:
            query["insecure"] = "1"
        path = f"/v1/runtimes/{name}?" + urlencode(query)
        return dict(self._put_stream(path, chunks, content_type="application/octet-stream"))

    def remove_runtime(self, name: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/runtimes/{name}"))

    def test_runtime(self, name: str) -> dict[str, Any]:
        """Starts the runtime's smoke test as a job; returns the job (follow it with events)."""
        return dict(self._call("POST", f"/v1/runtimes/{name}/test"))

    def validate_runtime(self, text: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/runtimes/validate", body={"text": text}))

    def events(
        self, job_id: str, *, follow: bool = True, after: str | None = None
    ) -> Iterator[LogEvent]:
        """A job's log events, then an `end` event. While following, a dropped connection (the
        agent restarting) is resumed after the last event received: nothing lost or repeated."""
        cursor = after
        deadline: float | None = None
        while True:
            try:
                for event in self._events_once(job_id, follow=follow, after=cursor):
                    deadline = None
                    cursor = event.cursor or cursor
                    yield event
                    if event.kind == "end":
                        return
                if not follow:
                    return
                raise ConnectionError("the stream ended before the job did")
            except (OSError, http.client.HTTPException) as exc:
                if not follow:
                    raise self._unreachable(exc) from exc
                deadline = deadline or time.monotonic() + RECONNECT_WINDOW_SEC
                if time.monotonic() > deadline:
                    raise self._unreachable(exc) from exc
                time.sleep(0.2)

    def _events_once(
        self, job_id: str, *, follow: bool, after: str | None
    ) -> Generator[LogEvent, None, None]:
        headers = {"Last-Event-ID": after} if after else {}
        params = {"follow": "1" if follow else "0"}
        response = self._wire.send(
            "GET", f"/v1/jobs/{job_id}/logs", params=params, headers=headers, stream=True
        )
        try:
            if response.status >= 400:
                raise _answered_error(read_json(response), response.status, response.reason)
            for block in sse_blocks(response):
                event = parse_sse_block(block)
                if event is not None:
                    yield event
        finally:
            response.close()

    def logs(self, job_id: str, *, follow: bool = True) -> Iterator[str]:
        """The job's output lines; with follow, until the job ends."""
        for event in self.events(job_id, follow=follow):
            if event.kind == "log":
                yield str(event.data["message"])

    def wait(self, job_id: str) -> dict[str, Any]:
        """Block until the job ends; returns its record."""
        for event in self.events(job_id, follow=True):
            if event.kind == "end":
                break
        return self.get(job_id)


def _volume_mount(text: str) -> dict[str, Any]:
    """NAME or NAME:ro (NAME:rw also), as --volume takes it."""
    name, sep, mode = text.partition(":")
    if sep and mode not in ("ro", "rw"):
        raise RnxError("invalid", f"--volume: {text!r} is not valid; NAME, NAME:ro or NAME:rw")
    return {"name": name, "read_only": mode == "ro"}
