"""systemd's own reading of times: `systemd-analyze calendar` (the parser PID 1 uses for
OnCalendar=) and `systemd-analyze timestamp` (local times). Joblet has no calendar parser of
its own: an expression is what systemd says it is, and a refusal carries systemd's reason.

Run in the host's time zone (the agent's environment has no TZ: /etc/localtime, as PID 1), with
the expression after `--` (never an option), bounded in time and output.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, datetime

from joblet_agent.domain.when import MAX_WHEN_CHARS
from joblet_agent.errors import ErrorCode, JobletError, excerpt
from joblet_agent.ports import CalendarAnswer

logger = logging.getLogger(__name__)

ANALYZE = "/usr/bin/systemd-analyze"
TIMEOUT_SEC = 10.0
MAX_OUTPUT = 64 * 1024
_STAMP = re.compile(r"^\w{3} (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) UTC$")


class SystemdCalendar:
    """The Calendar port."""

    async def next_elapse(
        self, expression: str, *, after: datetime | None = None
    ) -> CalendarAnswer:
        args = ["calendar", "--iterations=1"]
        if after is not None:
            args.append(f"--base-time=@{int(after.timestamp())}")
        fields = await _analyze(*args, "--", _bounded(expression))
        if "Normalized form" not in fields:
            raise _unreadable("calendar", fields)
        return CalendarAnswer(fields["Normalized form"], _elapse(fields))

    async def timestamp(self, text: str) -> datetime:
        fields = await _analyze("timestamp", "--", _bounded(text))
        seconds = fields.get("UNIX seconds", "")
        if not re.fullmatch(r"@\d+(\.\d+)?", seconds):
            raise _unreadable("timestamp", fields)
        return datetime.fromtimestamp(float(seconds[1:]), UTC)


def _bounded(text: str) -> str:
    if len(text) > MAX_WHEN_CHARS or not text.isprintable():
        raise JobletError(ErrorCode.INVALID, f"{excerpt(text)}: not a time systemd could read")
    return text


def _elapse(fields: dict[str, str]) -> datetime | None:
    """The next elapse in UTC: its '(in UTC)' line when the host's zone is another."""
    text = fields.get("(in UTC)") or fields.get("Next elapse", "")
    if text == "never":
        return None
    match = _STAMP.match(text)
    if not match:
        raise _unreadable("calendar", fields)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


async def _analyze(*args: str) -> dict[str, str]:
    """`Key: value` lines of systemd-analyze's answer (the first of each key); a refusal is
    INVALID with systemd's own words."""
    try:
        process = await asyncio.create_subprocess_exec(
            ANALYZE,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
        )
    except OSError as exc:
        raise JobletError(ErrorCode.INTERNAL, f"cannot run {ANALYZE}: {exc.strerror}") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_SEC)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise JobletError(
            ErrorCode.INTERNAL, f"{ANALYZE} did not answer in {TIMEOUT_SEC:g} s"
        ) from None
    if process.returncode != 0:
        reason = " ".join(err[:MAX_OUTPUT].decode(errors="replace").split())
        raise JobletError(ErrorCode.INVALID, reason or f"{ANALYZE} refused it")
    fields: dict[str, str] = {}
    for line in out[:MAX_OUTPUT].decode(errors="replace").splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    logger.debug("systemd-analyze %s: %s", args[0], fields)
    return fields


def _unreadable(what: str, fields: dict[str, str]) -> JobletError:
    return JobletError(
        ErrorCode.INTERNAL, f"cannot read systemd-analyze {what}'s answer: {excerpt(fields)}"
    )
