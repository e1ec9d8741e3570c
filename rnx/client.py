"""The Python client for the Joblet API: a small synchronous facade over aiohttp.

Programs and AI agents use Client; the CLI uses it too, so there is one implementation of the wire.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from rnx.config import ConfigError, Target, resolve_target

RECONNECT_WINDOW_SEC = 60.0  # how long a follower waits for a restarting agent


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
    def __init__(self, target: Target) -> None:
        self.target = target
        self._session: aiohttp.ClientSession | None = None

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self.target.socket:
                connector = aiohttp.UnixConnector(path=self.target.socket)
            else:
                from rnx.tls import client_context

                assert self.target.ca and self.target.cert and self.target.key
                connector = aiohttp.TCPConnector(
                    ssl=client_context(self.target.ca, self.target.cert, self.target.key)
                )
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
            self._session = aiohttp.ClientSession(
                base_url=self.target.url, connector=connector, timeout=timeout
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _unreachable(self, exc: BaseException) -> RnxError:
        from rnx.tls import diagnose, explain

        where = self.target.describe()
        meaning = explain(exc)
        if meaning is None and self.target.address and _during_handshake(exc):
            meaning = await asyncio.to_thread(diagnose, self.target)
        if meaning:
            return RnxError("unauthenticated", f"TLS with {where} failed: {meaning}")
        return RnxError(
            "unreachable",
            f"cannot reach the Joblet agent at {where}: {exc}",
            "is joblet.socket active there? (systemctl status joblet.socket)",
        )

    async def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        session = await self._http()
        try:
            async with session.request(method, path, json=body, params=params) as resp:
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise _answered_error(data, resp.status, resp.reason)
                return data
        except (aiohttp.ClientConnectionError, ssl.SSLError) as exc:
            raise await self._unreachable(exc) from exc

    async def events(
        self, job_id: str, *, follow: bool, after: str | None = None
    ) -> AsyncGenerator[LogEvent, None]:
        """A job's log events; while following, a dropped connection (the agent restarting) is
        resumed after the last event received, so nothing is lost or repeated."""
        cursor = after
        deadline: float | None = None
        while True:
            try:
                async for event in self._events_once(job_id, follow=follow, after=cursor):
                    deadline = None
                    if event.cursor:
                        cursor = event.cursor
                    yield event
                    if event.kind == "end":
                        return
                if not follow:
                    return
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                if not follow:
                    raise await self._unreachable(exc) from exc
                loop = asyncio.get_running_loop()
                deadline = deadline or loop.time() + RECONNECT_WINDOW_SEC
                if loop.time() > deadline:
                    raise await self._unreachable(exc) from exc
                await asyncio.sleep(0.2)

    async def _events_once(
        self, job_id: str, *, follow: bool, after: str | None
    ) -> AsyncGenerator[LogEvent, None]:
        session = await self._http()
        headers = {"Last-Event-ID": after} if after else {}
        params = {"follow": "1" if follow else "0"}
        async with session.get(f"/v1/jobs/{job_id}/logs", params=params, headers=headers) as resp:
            if resp.status >= 400:
                raise _answered_error(await resp.json(content_type=None), resp.status, resp.reason)
            pending = b""
            async for chunk in resp.content.iter_any():
                # Many events per chunk when the job is chatty: split blocks, not lines.
                blocks = (pending + chunk).split(b"\n\n")
                pending = blocks.pop()
                for block in blocks:
                    event = parse_sse_block(block.decode())
                    if event is not None:
                        yield event


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
    """A refused client certificate looks like a reset or a disconnect, not a refused connect."""
    return isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError | ssl.SSLError
    ) and not isinstance(exc, aiohttp.ClientConnectorError)


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
            target = resolve_target(config_path=config, node=node, socket_path=socket)
        except ConfigError as exc:
            raise RnxError("config", str(exc)) from exc
        self._loop = asyncio.new_event_loop()
        self._async = AsyncClient(target)

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
