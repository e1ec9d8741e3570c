"""Execs: a command run inside a running job by the job's init, its output streamed back and
written to the journal under the job's unit; and attaches to the job's own command's terminal
or stdin (`rnx job run -i/-t`).

The agent starts nothing itself: it asks the job's init over the job's channel
(units/exec_channel.py), so what runs has the job's isolation and limits. It trusts nothing
init answers beyond the frame protocol's bounds (domain/exec_frames.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import PurePosixPath

from joblet_agent.domain.config import AgentConfig
from joblet_agent.domain.exec import (
    TIMEOUT_EXIT_CODE,
    ExecEnd,
    ExecSpec,
    LineSplitter,
    TerminalSize,
)
from joblet_agent.domain.exec_frames import (
    MAX_REQUEST,
    ChannelClosed,
    FrameError,
    attach_request,
    exec_request,
    frame,
    init_refusal,
    parse_error,
    parse_exit,
    parse_started,
    signal_frame,
    window_size,
)
from joblet_agent.domain.job import JobRecord, JobState
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import ChannelConnection, ExecJournal, JobChannels
from joblet_agent.units.paths import JobPaths

logger = logging.getLogger(__name__)

KILL = 9


def require_running(record: JobRecord, doing: str) -> None:
    """Execs, attaches and writes need a live job; the error names the state it is in."""
    if record.state is not JobState.RUNNING:
        raise JobletError(
            ErrorCode.CONFLICT,
            f"cannot {doing} job {record.id}: it is {record.state}; only a RUNNING job can",
            hint="rnx job status " + record.id[:8],
        )


def channel_lost(record: JobRecord, exc: Exception) -> JobletError:
    return JobletError(
        ErrorCode.CONFLICT,
        f"job {record.id} has no exec channel now ({exc}): it ended, is ending, or was started "
        "by an agent without exec channels",
        hint="rnx job status " + record.id[:8],
    )


class Session:
    """One exec or attach in progress: input to it, its output and its end."""

    def __init__(
        self,
        record: JobRecord,
        connection: ChannelConnection,
        *,
        exec_id: str,
        stream_names: tuple[str, str],
        journal: Callable[[str, bytes], None] | None,
        timeout_sec: float | None,
    ) -> None:
        self.id = exec_id
        self.record = record
        self.end: ExecEnd | None = None
        self._connection = connection
        self._names = stream_names
        self._journal = journal
        self._timeout = timeout_sec
        self._timed_out = False
        self._lines = {name: LineSplitter() for name in stream_names}

    async def stdin(self, data: bytes) -> None:
        for start in range(0, len(data), MAX_REQUEST):
            await self._send(frame(b"i", data[start : start + MAX_REQUEST]))

    async def close_stdin(self) -> None:
        await self._send(frame(b"d"))

    async def resize(self, size: TerminalSize) -> None:
        await self._send(window_size(size.rows, size.cols))

    async def signal(self, number: int) -> None:
        await self._send(signal_frame(number))

    async def _send(self, data: bytes) -> None:
        with contextlib.suppress(ChannelClosed):  # its end is what output() reports
            await self._connection.send(data)

    async def output(self) -> AsyncIterator[tuple[str, bytes]]:
        """(stream, bytes) as init relays them, until the exec ends (self.end) or, for an
        attach, until the command or the attach ends (self.end stays None)."""
        timer = None
        if self._timeout is not None:
            timer = asyncio.get_running_loop().call_later(self._timeout, self._time_out)
        try:
            while True:
                try:
                    kind, payload = await self._connection.receive()
                except ChannelClosed:
                    return
                if kind in (b"o", b"e"):
                    name = self._names[0] if kind == b"o" else self._names[1]
                    self._to_journal(name, payload)
                    yield name, payload
                elif kind == b"x":
                    code, sig = parse_exit(payload)
                    if self._timed_out:
                        code = TIMEOUT_EXIT_CODE
                    self.end = ExecEnd(code, sig, timed_out=self._timed_out)
                    return
                else:
                    raise FrameError(f"a {kind!r} frame during an exec")
        finally:
            if timer is not None:
                timer.cancel()
            for name, splitter in self._lines.items():
                for line in splitter.flush():
                    self._write(name, line)

    def _time_out(self) -> None:
        self._timed_out = True
        task = asyncio.get_running_loop().create_task(self.signal(KILL))
        task.add_done_callback(lambda _: None)

    def _to_journal(self, name: str, data: bytes) -> None:
        for line in self._lines[name].feed(data):
            self._write(name, line)

    def _write(self, name: str, line: bytes) -> None:
        if self._journal is not None:
            self._journal(name, line)

    def close(self) -> None:
        self._connection.close()


class ExecService:
    def __init__(self, config: AgentConfig, channels: JobChannels, journal: ExecJournal) -> None:
        self.config = config
        self.channels = channels
        self.journal = journal
        # Told of every exec, attach or file call on a job (services/lifetime.py: idle timeouts).
        self.on_touch: list[Callable[[str], None]] = []
        self._busy: dict[str, int] = {}  # job id -> sessions in progress

    def busy(self, job_id: str) -> bool:
        return self._busy.get(job_id, 0) > 0

    def touch(self, job_id: str) -> None:
        for listener in self.on_touch:
            listener(job_id)

    def socket_of(self, record: JobRecord) -> PurePosixPath:
        return JobPaths.for_job(PurePosixPath(self.config.jobs_dir), record.id).channel

    async def connect(self, record: JobRecord) -> ChannelConnection:
        try:
            return await self.channels.connect(self.socket_of(record))
        except ChannelClosed as exc:
            raise channel_lost(record, exc) from None

    @contextlib.asynccontextmanager
    async def exec(self, record: JobRecord, spec: ExecSpec, caller: str) -> AsyncIterator[Session]:
        """An exec started in the job (its program found on the job's PATH), closed on leaving."""
        require_running(record, "exec into")
        exec_id = str(uuid.uuid4())
        connection = await self.connect(record)
        try:
            request = exec_request(
                spec.argv,
                spec.env,
                spec.cwd,
                tty=spec.tty,
                stdin=spec.stdin,
                rows=spec.size.rows,
                cols=spec.size.cols,
            )
            pid = await self._started(record, connection, request, what=spec.argv[0])
            logger.info(
                "exec %s in job %s by %s: %s (pid %s)",
                exec_id,
                record.id,
                caller,
                excerpt(list(spec.argv), 200),
                pid,
                extra={"JOB_ID": record.id, "EXEC_ID": exec_id, "UNIT": record.unit},
            )
            names = ("tty", "tty") if spec.tty else ("stdout", "stderr")

            def journal(stream: str, line: bytes) -> None:
                self.journal.line(record.unit, record.id, exec_id, stream, line)

            session = Session(
                record,
                connection,
                exec_id=exec_id,
                stream_names=names,
                journal=journal,
                timeout_sec=spec.timeout_sec,
            )
            async with self._session(record.id):
                yield session
        finally:
            connection.close()

    @contextlib.asynccontextmanager
    async def attach(
        self, record: JobRecord, size: TerminalSize, caller: str
    ) -> AsyncIterator[Session]:
        """The job's own command's terminal (its output comes too) or stdin."""
        require_running(record, "attach to")
        connection = await self.connect(record)
        try:
            await self._started(
                record, connection, attach_request(size.rows, size.cols), what="attach"
            )
            logger.info("attach to job %s by %s", record.id, caller, extra={"JOB_ID": record.id})
            session = Session(
                record,
                connection,
                exec_id="attach",
                stream_names=("tty", "tty"),
                journal=None,  # init writes the command's terminal output to its journal itself
                timeout_sec=None,
            )
            async with self._session(record.id):
                yield session
        finally:
            connection.close()

    async def _started(
        self, record: JobRecord, connection: ChannelConnection, request: bytes, *, what: str
    ) -> int | None:
        try:
            await connection.send(request)
            kind, payload = await connection.receive()
        except ChannelClosed as exc:
            raise channel_lost(record, exc) from None
        if kind == b"E":
            raise init_refusal(parse_error(payload), what)
        if kind != b"p":
            raise FrameError(f"a {kind!r} frame where init says it started")
        return parse_started(payload)

    @contextlib.asynccontextmanager
    async def _session(self, job_id: str) -> AsyncIterator[None]:
        self._busy[job_id] = self._busy.get(job_id, 0) + 1
        self.touch(job_id)
        try:
            yield
        finally:
            self._busy[job_id] -= 1
            if not self._busy[job_id]:
                del self._busy[job_id]
            self.touch(job_id)
