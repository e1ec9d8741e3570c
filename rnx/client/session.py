"""An exec or an attach in progress: a WebSocket to the agent speaking docs/exec-protocol.md.

`Session.events()` yields ("stdout" | "stderr", bytes) as the command writes, then ("end",
ExecEnd | None); input goes in with `stdin`, `close_stdin`, `resize` and `signal`, from any
thread. An agent that goes away mid-session (a restart) is RnxError("session-lost"): the job
keeps running, the command that was exec'd was hung up by the job's init.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from typing import Any

from rnx.client.exec import ExecEnd
from rnx.errors import RnxError
from rnx.websocket import BINARY, TEXT, WebSocket

STDIN_CHUNK = 64 * 1024


class Session:
    def __init__(self, ws: WebSocket, started: dict[str, Any]) -> None:
        self._ws = ws
        self.exec_id = str(started.get("exec_id", ""))
        self.job = str(started.get("job", ""))
        self.end: ExecEnd | None = None

    @classmethod
    def start(cls, ws: WebSocket, request: dict[str, Any]) -> Session:
        """Send the request; return once the agent says the command runs (or raise its error)."""
        try:
            ws.send_text(json.dumps(request))
            kind, data = _next_message(ws)
            if kind != TEXT:
                raise RnxError("bad-answer", "the agent sent output before saying the exec began")
            message = json.loads(data)
            if "error" in message:
                raise _error(message["error"])
            return cls(ws, message)
        except BaseException:
            ws.close()
            raise

    def events(self) -> Iterator[tuple[str, Any]]:
        try:
            while True:
                kind, data = _next_message(self._ws)
                if kind == BINARY and data:
                    yield ("stderr" if data[:1] == b"e" else "stdout"), data[1:]
                elif kind == TEXT:
                    message = json.loads(data)
                    if "error" in message:
                        raise _error(message["error"])
                    if "end" in message:
                        end = message["end"]
                        self.end = None if end is None else ExecEnd.from_dict(end, "end")
                        yield "end", self.end
                        return
        finally:
            self.close()

    def stdin(self, data: bytes) -> None:
        for start in range(0, len(data), STDIN_CHUNK):
            self._send(b"i" + data[start : start + STDIN_CHUNK])

    def close_stdin(self) -> None:
        self._send(b"d")

    def resize(self, rows: int, cols: int) -> None:
        self._send(b"w" + struct.pack(">HH", min(rows, 65535), min(cols, 65535)))

    def signal(self, number: int) -> None:
        self._send(b"k" + bytes([number]))

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the session's end is what events() reports
            self._ws.send_binary(data)

    def close(self) -> None:
        self._ws.close()


def _next_message(ws: WebSocket) -> tuple[int, bytes]:
    try:
        message = ws.receive()
    except (OSError, ValueError) as exc:
        raise _lost(str(exc)) from exc
    if message is None:
        raise _lost("the agent closed the connection")
    return message


def _lost(why: str) -> RnxError:
    return RnxError(
        "session-lost",
        f"the session was lost: {why}",
        "the agent went away (restarted?); the job itself keeps running: rnx job status",
    )


def _error(body: Any) -> RnxError:
    if not isinstance(body, dict):
        return RnxError("bad-answer", "the agent's error is not an object")
    return RnxError(
        str(body.get("code", "error")), str(body.get("message", "")), body.get("hint"), 0
    )
