"""Reading journald, the log store: the only module that runs journalctl.

journalctl -o json is used rather than python-systemd's Reader: it is the interface journald keeps
stable, it needs no extra binding, and it streams with --follow/--after-cursor out of the box.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_STREAM_LIMIT = 16 * 1024 * 1024  # one journal entry as JSON; journald caps lines far below this
_READ_CHUNK = 256 * 1024
STREAMS_DIR = Path("/run/systemd/journal/streams")
DRAIN_TIMEOUT_SEC = 60.0
DRAIN_POLL_SEC = 0.02
_END_FIELDS = ("EXIT_CODE", "EXIT_STATUS", "UNIT_RESULT", "MESSAGE_ID")
# PID 1's "Deactivated successfully." (sd-messages.h SD_MESSAGE_UNIT_SUCCESS); a clean exit logs
# no EXIT_CODE/EXIT_STATUS fields at the default log level.
UNIT_SUCCESS_ID = "7ad2d189f7e94e70a38c781354912448"
# PID 1's "Started ...": its start job done (SD_MESSAGE_UNIT_STARTED); for Type=exec, once the
# program was exec'd.
UNIT_STARTED_ID = "39f53479d3a045ac8e11786248231fbf"


class JournalctlJournal:
    async def _run(self, *args: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            "journalctl",
            "--no-pager",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode not in (0, 1):  # 1: no entries matched
            logger.warning("journalctl %s failed: %s", args, err.decode(errors="replace").strip())
        return out

    async def drained(self, unit: str) -> None:
        """Return once journald has read a finished unit's stdout/stderr stream to its end.

        A job can exit long before journald has consumed what it wrote (100,000 fast lines take
        journald seconds), and `journalctl --sync` (systemd 252) does not wait for stream sockets.
        journald keeps a state file per open stdout stream, naming the unit, and removes it after
        the stream's last line is stored; so the unit's lines are complete once none names it.
        Polled, since journald offers no notification for it; bounded by DRAIN_TIMEOUT_SEC.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_SEC
        while await asyncio.to_thread(_has_open_stream, unit):
            if loop.time() > deadline:
                logger.warning(
                    "journald still reads %s's output after %ss; giving up waiting",
                    unit,
                    DRAIN_TIMEOUT_SEC,
                )
                return
            await asyncio.sleep(DRAIN_POLL_SEC)

    async def unit_end(self, unit: str) -> dict[str, str] | None:
        """PID 1's structured messages about the unit's end: EXIT_CODE, EXIT_STATUS, UNIT_RESULT."""
        out = await self._run(
            "-o", "json", "_PID=1", f"UNIT={unit}", "--output-fields=" + ",".join(_END_FIELDS)
        )
        found: dict[str, str] = {}
        for line in out.splitlines():
            entry = json.loads(line)
            if entry.get("MESSAGE_ID") == UNIT_SUCCESS_ID:
                found.update(UNIT_RESULT="success", EXIT_CODE="exited", EXIT_STATUS="0")
            found.update({k: str(entry[k]) for k in _END_FIELDS[:3] if k in entry})
        return found or None

    async def unit_started(self, unit: str) -> datetime | None:
        out = await self._run(
            "-o", "json", "-n", "1", "_PID=1", f"UNIT={unit}", f"MESSAGE_ID={UNIT_STARTED_ID}",
            "--output-fields=MESSAGE_ID",
        )  # fmt: skip
        lines = out.splitlines()
        if not lines:
            return None
        usec = int(json.loads(lines[-1])["__REALTIME_TIMESTAMP"])
        return datetime.fromtimestamp(usec / 1_000_000, UTC)

    async def last_cursor(self, unit: str) -> str | None:
        out = await self._run(
            "-o", "json", "-n", "1", f"_SYSTEMD_UNIT={unit}", "--output-fields=_PID"
        )
        lines = out.splitlines()
        return str(json.loads(lines[-1])["__CURSOR"]) if lines else None

    async def entries(
        self, unit: str, *, after_cursor: str | None, follow: bool
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """The job's own output (not PID 1's messages about it), oldest first, in batches of
        whatever journalctl has written so far: one await per batch, not per line, is what lets
        a stream keep up with a chatty job."""
        args = [
            "journalctl",
            "--no-pager",
            "-o",
            "json",
            f"_SYSTEMD_UNIT={unit}",
            "--output-fields=MESSAGE,PRIORITY,_PID,__REALTIME_TIMESTAMP",
        ]
        if after_cursor:
            args.append(f"--after-cursor={after_cursor}")
        if follow:
            args += ["--follow", "--lines=all"]  # --follow alone starts at the last 10 lines
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=_STREAM_LIMIT,
        )
        assert proc.stdout is not None
        pending = b""
        try:
            while chunk := await proc.stdout.read(_READ_CHUNK):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()  # an incomplete last line waits for the next chunk
                if lines:
                    yield [json.loads(line) for line in lines if line]
            if pending.strip():
                yield [json.loads(pending)]
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


def _has_open_stream(unit: str) -> bool:
    needle = f"\nUNIT={unit}\n"
    try:
        files = list(STREAMS_DIR.iterdir())
    except FileNotFoundError:
        return False
    for path in files:
        try:
            if needle in "\n" + path.read_text():
                return True
        except OSError:  # closed while we looked
            continue
    return False
