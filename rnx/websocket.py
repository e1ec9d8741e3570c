"""A small WebSocket client (RFC 6455) for the agent's exec and attach routes, over the same
connections rnx.wire makes (a Unix socket, or TCP with mutual TLS). The standard library has
none, and rnx does not import aiohttp (rnx/wire.py says why).

Blocking; `send_*` may be called from another thread than `receive` (stdin is read by one).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
from typing import Any

from rnx.config import Target

CONNECT_TIMEOUT_SEC = 30.0
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 16 * 1024 * 1024
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    """The agent answered the upgrade with an HTTP error: its status, reason and JSON body."""

    def __init__(self, status: int, reason: str, body: Any) -> None:
        super().__init__(f"HTTP {status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body


def _connect(target: Target) -> socket.socket:
    if target.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_SEC)
        sock.connect(target.socket)
        return sock
    from rnx.tls import client_context

    assert target.address and target.ca and target.cert and target.key
    host, _, port = target.address.rpartition(":")
    host = host.strip("[]")
    raw = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_SEC)
    # Small frames each way (a request, a key, a resize): sent at once, not held by Nagle for
    # the agent's delayed ACK (which cost an exec over mTLS 40 ms; bench/exec_latency.py).
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    context = client_context(target.ca, target.cert, target.key)
    return context.wrap_socket(raw, server_hostname=host)


class WebSocket:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._send_lock = threading.Lock()
        self.closed = False

    @classmethod
    def open(cls, target: Target, path: str) -> WebSocket:
        sock = _connect(target)
        try:
            key = base64.b64encode(os.urandom(16))
            sock.sendall(
                b"GET " + path.encode() + b" HTTP/1.1\r\n"
                b"Host: joblet\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            ws = cls(sock)
            status, reason, headers = ws._read_head()
            if status != 101:
                raise HandshakeRefused(status, reason, ws._read_body(headers))
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()  # noqa: S324
            if headers.get("sec-websocket-accept") != accept:
                raise OSError("the agent's WebSocket handshake is not RFC 6455's")
            sock.settimeout(None)  # sessions last as long as their command
            return ws
        except BaseException:
            sock.close()
            raise

    def _read_head(self) -> tuple[int, str, dict[str, str]]:
        while b"\r\n\r\n" not in self._buffer:
            self._fill(1)
            if len(self._buffer) > 64 * 1024:
                raise OSError("the agent's answer to the upgrade has no end of headers")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("iso-8859-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), parts[2] if len(parts) > 2 else "", headers

    def _read_body(self, headers: dict[str, str]) -> Any:
        length = int(headers.get("content-length", "0") or 0)
        while len(self._buffer) < min(length, 1024 * 1024):
            if not self._fill(length - len(self._buffer), eof_ok=True):
                break
        try:
            return json.loads(self._buffer[:length])
        except ValueError:
            return None

    def _fill(self, at_least: int, *, eof_ok: bool = False) -> bool:
        chunk = self._sock.recv(max(at_least, 65536))
        if not chunk:
            if eof_ok:
                return False
            raise ConnectionResetError("the agent closed the connection")
        self._buffer += chunk
        return True

    def _take(self, count: int) -> bytes:
        while len(self._buffer) < count:
            self._fill(count - len(self._buffer))
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    # -- messages ---------------------------------------------------------------------------

    def send_text(self, text: str) -> None:
        self._send(TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        self._send(BINARY, data)

    def _send(self, opcode: int, payload: bytes) -> None:
        """One frame, masked as a client's must be."""
        length = len(payload)
        head = bytes([0x80 | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", length)
        mask = os.urandom(4)
        # XOR with the repeated mask through int arithmetic: C speed, no Python loop per byte.
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            length, "big"
        )
        with self._send_lock:
            self._sock.sendall(head + mask + masked)

    def receive(self) -> tuple[int, bytes] | None:
        """The next message (TEXT or BINARY, and its data), None once the agent closed."""
        opcode, parts = 0, []
        while True:
            first, second = self._take(2)
            code = first & 0x0F
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._take(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._take(8))[0]
            if length > MAX_MESSAGE:
                raise OSError(f"a WebSocket frame of {length} bytes")
            mask = self._take(4) if second & 0x80 else b""
            data = self._take(length)
            if mask:
                repeated = (mask * (length // 4 + 1))[:length]
                data = (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
                    length, "big"
                )
            if code == PING:
                self._send(PONG, data)
                continue
            if code == PONG:
                continue
            if code == CLOSE:
                self.close()
                return None
            if code:
                opcode = code
            parts.append(data)
            if first & 0x80:  # FIN
                return opcode, b"".join(parts)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self._send(CLOSE, struct.pack(">H", 1000))
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
