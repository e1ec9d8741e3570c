"""Connections to jobs' inits: the only place the agent opens a job's channel socket.

The socket is PID 1's, in the job's root-only directory on the host (units/exec_channel.py);
the other end is init inside the job, so what comes back is read as the job's output is: each
frame's length is checked before its payload is read (domain/exec_frames.py).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import PurePosixPath

from joblet_agent.domain.exec_frames import ChannelClosed, FrameError, parse_header

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SEC = 10.0
_BUFFER = 256 * 1024


class SocketConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, RuntimeError) as exc:  # RuntimeError: a closed transport
            raise ChannelClosed(str(exc)) from exc

    async def receive(self) -> tuple[bytes, bytes]:
        try:
            kind, length = parse_header(await self._reader.readexactly(5))
            return kind, await self._reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError as exc:
            raise ChannelClosed("the job's init closed the connection") from exc
        except ConnectionError as exc:
            raise ChannelClosed(str(exc)) from exc
        except FrameError:
            self.close()
            raise

    def close(self) -> None:
        self._writer.close()


class UnixJobChannels:
    async def connect(self, socket: PurePosixPath) -> SocketConnection:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(socket), limit=_BUFFER), CONNECT_TIMEOUT_SEC
            )
        except (OSError, TimeoutError) as exc:
            logger.debug("no channel at %s: %s", socket, exc)
            raise ChannelClosed(str(exc)) from exc
        return SocketConnection(reader, writer)
