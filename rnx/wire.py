"""HTTP/1.1 to the agent with the standard library: a Unix socket, or TCP with mutual TLS.

rnx is a command people start many times a minute; aiohttp's import alone took 110-155 ms of
the 300 ms budget for `rnx job run -- /bin/true`, and http.client costs a few. The agent keeps
aiohttp for its server.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlencode

from rnx.config import Target

CONNECT_TIMEOUT_SEC = 30.0
_STALE = (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected)
_READ_CHUNK = 64 * 1024


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("joblet", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class Wire:
    """One kept-alive connection to the target; reopened after errors."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._conn: http.client.HTTPConnection | None = None
        self._context: ssl.SSLContext | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.target.socket:
                self._conn = UnixHTTPConnection(self.target.socket, CONNECT_TIMEOUT_SEC)
            else:
                from rnx.tls import client_context

                assert self.target.address and self.target.ca and self.target.cert
                assert self.target.key
                if self._context is None:
                    self._context = client_context(
                        self.target.ca, self.target.cert, self.target.key
                    )
                host, _, port = self.target.address.rpartition(":")
                self._conn = http.client.HTTPSConnection(
                    host.strip("[]"),
                    int(port),
                    timeout=CONNECT_TIMEOUT_SEC,
                    context=self._context,
                )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def send(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> http.client.HTTPResponse:
        """Send a request; the caller reads the response (whole, or streamed)."""
        url = path + ("?" + urlencode(params) if params else "")
        payload = json.dumps(body).encode() if body is not None else None
        all_headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            **(headers or {}),
        }
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        reused = self._conn is not None
        conn = self._connection()
        try:
            conn.request(method, url, body=payload, headers=all_headers)
            response = conn.getresponse()
        except _STALE as exc:
            self.close()
            if not reused:
                raise
            # The agent closed the idle kept-alive connection (it restarted, say) before reading
            # this request: send it once more on a new connection, as browsers and aiohttp do.
            del exc
            conn = self._connection()
            try:
                conn.request(method, url, body=payload, headers=all_headers)
                response = conn.getresponse()
            except BaseException:
                self.close()
                raise
        except BaseException:
            self.close()
            raise
        if stream:
            # A stream is read to its end or abandoned: never reuse its connection.
            self._conn = None
            if conn.sock is not None:
                conn.sock.settimeout(None)  # followers wait as long as jobs run
        return response

    def send_stream(
        self, method: str, path: str, chunks: Iterable[bytes], *, content_type: str
    ) -> http.client.HTTPResponse:
        """Send a body made as it goes (chunked), on a fresh connection: it cannot be replayed,
        so it must not meet a kept-alive connection the agent has just closed."""
        self.close()
        conn = self._connection()
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        try:
            conn.request(method, path, body=chunks, headers=headers, encode_chunked=True)
            return conn.getresponse()
        except BaseException:
            self.close()
            raise


def read_json(response: http.client.HTTPResponse) -> Any:
    raw = response.read()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"code": "error", "message": raw.decode(errors="replace")[:200]}


def sse_blocks(response: http.client.HTTPResponse) -> Iterator[str]:
    """The text of each Server-Sent Event, in order; many per read when the job is chatty."""
    pending = b""
    while chunk := response.read1(_READ_CHUNK):
        blocks = (pending + chunk).split(b"\n\n")
        pending = blocks.pop()
        for block in blocks:
            yield block.decode()
