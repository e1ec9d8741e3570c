"""The Python client for the Joblet API: a small synchronous facade over aiohttp.

Programs and AI agents use Client; the CLI uses it too, so there is one implementation of the wire.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

DEFAULT_SOCKET = "/run/joblet/joblet.sock"


class RnxError(Exception):
    """An error answered by the agent ({code, message, hint}) or met on the way to it."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.status = status


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One Server-Sent Event of a job's log stream: a line, or the end with the final state."""

    kind: str  # "log" or "end"
    data: dict[str, Any]
    cursor: str | None


class AsyncClient:
    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path or os.environ.get("JOBLET_SOCKET", DEFAULT_SOCKET)
        self._session: aiohttp.ClientSession | None = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.UnixConnector(path=self.socket_path)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
            self._session = aiohttp.ClientSession(
                base_url="http://joblet", connector=connector, timeout=timeout
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        session = await self._http()
        try:
            async with session.request(method, path, json=body, params=params) as resp:
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise RnxError(
                        data.get("code", "error"),
                        data.get("message", resp.reason),
                        data.get("hint"),
                        resp.status,
                    )
                return data
        except aiohttp.ClientConnectorError as exc:
            raise RnxError(
                "unreachable",
                f"cannot reach the Joblet agent at {self.socket_path}: "
                f"{exc.os_error.strerror or exc}",
                "is joblet.socket active? (systemctl status joblet.socket)",
            ) from exc

    async def events(
        self, job_id: str, *, follow: bool, after: str | None = None
    ) -> AsyncGenerator[LogEvent, None]:
        session = await self._http()
        headers = {"Last-Event-ID": after} if after else {}
        params = {"follow": "1" if follow else "0"}
        async with session.get(f"/v1/jobs/{job_id}/logs", params=params, headers=headers) as resp:
            if resp.status >= 400:
                data = await resp.json(content_type=None)
                raise RnxError(
                    data.get("code", "error"),
                    data.get("message", ""),
                    data.get("hint"),
                    resp.status,
                )
            kind, cursor = "message", None
            data_lines: list[str] = []
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    continue
                if not line:
                    if data_lines:
                        yield LogEvent(kind, json.loads("\n".join(data_lines)), cursor)
                    kind, data_lines, cursor = "message", [], None
                    continue
                field, _, value = line.partition(": ")
                if field == "event":
                    kind = value
                elif field == "data":
                    data_lines.append(value)
                elif field == "id":
                    cursor = value


class Client:
    """Synchronous client. `Client()` talks to the local agent over /run/joblet/joblet.sock."""

    def __init__(self, socket_path: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(socket_path)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._loop.run_until_complete(self._async.close())
        self._loop.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._loop.run_until_complete(self._async.request(method, path, **kwargs))

    def run(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        secret_env: dict[str, str] | None = None,
        name: str | None = None,
        workdir: str | None = None,
        **limits: Any,
    ) -> dict[str, Any]:
        """Start a job; limits are the API's names (cpu_percent, memory_bytes, timeout_sec, ...)."""
        body: dict[str, Any] = {"command": command[0], "args": list(command[1:])}
        for key, value in (
            ("env", env),
            ("secret_env", secret_env),
            ("name", name),
            ("workdir", workdir),
        ):
            if value:
                body[key] = value
        if limits:
            body["limits"] = limits
        return dict(self._call("POST", "/v1/jobs", body=body))

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}"))

    def list(self, **filters: str) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/jobs", params=filters)["jobs"])

    def stop(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/jobs/{job_id}/stop"))

    def delete(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/v1/jobs/{job_id}"))

    def delete_all(self) -> dict[str, Any]:
        return dict(self._call("DELETE", "/v1/jobs"))

    def metrics(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}/metrics"))

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/health"))

    def events(
        self, job_id: str, *, follow: bool = True, after: str | None = None
    ) -> Iterator[LogEvent]:
        stream = self._async.events(job_id, follow=follow, after=after)
        try:
            while True:
                try:
                    yield self._loop.run_until_complete(anext(stream))
                except StopAsyncIteration:
                    return
        finally:
            self._loop.run_until_complete(stream.aclose())

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
