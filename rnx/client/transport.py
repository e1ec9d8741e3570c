"""One agent's connection as the client uses it: requests and their JSON answers, the agent's
errors and the ones met on the way (each an RnxError), and a log stream that resumes across an
agent restart."""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from rnx.client.log import LogEvent, parse_sse_block
from rnx.config import Target
from rnx.errors import RnxError
from rnx.websocket import HandshakeRefused, WebSocket
from rnx.wire import Wire, read_json, sse_blocks

RECONNECT_WINDOW_SEC = 60.0  # how long a follower waits for a restarting agent


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


class Transport:
    """Requests to one target over one kept-alive connection (rnx.wire); the Client's base."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._wire = Wire(target)

    def close(self) -> None:
        self._wire.close()

    def _call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """The JSON answer of one request; an error answered or met on the way raised."""
        return self._answer(lambda: self._wire.send(method, path, body=body, params=params))

    def _put_stream(self, path: str, chunks: Iterable[bytes], *, content_type: str) -> Any:
        """PUT a body made as it goes (an upload, a runtime archive)."""
        return self._answer(
            lambda: self._wire.send_stream("PUT", path, chunks, content_type=content_type)
        )

    def _get_stream(self, path: str, params: dict[str, str]) -> http.client.HTTPResponse:
        """A GET whose body is read as it comes (a file, a tar stream); errors raised first."""
        try:
            response = self._wire.send("GET", path, params=params, stream=True)
            if response.status >= 400:
                raise _answered_error(read_json(response), response.status, response.reason)
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from exc
        return response

    def _websocket(self, path: str) -> WebSocket:
        """A WebSocket to `path` (exec, attach); the agent's refusal of the upgrade raised."""
        try:
            return WebSocket.open(self.target, path)
        except HandshakeRefused as exc:
            raise _answered_error(exc.body, exc.status, exc.reason) from None
        except OSError as exc:
            raise self._unreachable(exc) from exc

    def _answer(self, send: Callable[[], http.client.HTTPResponse]) -> Any:
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

    def _log_events(self, job_id: str, *, follow: bool, after: str | None) -> Iterator[LogEvent]:
        """The events of a log stream up to its `end` event. While following, a dropped
        connection (the agent restarting) is resumed after the last event received: nothing
        lost or repeated."""
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
