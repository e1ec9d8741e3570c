"""A job's log stream: Server-Sent Events of lines, then one `end` event with the final state
(docs/openapi.yaml: /v1/jobs/{id}/logs, LogEventData, EndEventData)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from rnx.client.fields import Fields, Model, bad_answer
from rnx.client.job import JobEnd


@dataclass(frozen=True, slots=True)
class LogLine(Model):
    message: str  # the line, without its newline (invalid UTF-8 replaced)
    pid: int | None  # the process that wrote it, when the journal knows
    priority: int  # syslog priority: 6 (info) for stdout
    timestamp_us: int  # when journald received it, microseconds since the Unix epoch

    @classmethod
    def read(cls, fields: Fields) -> LogLine:
        data = fields.data
        message, pid = data.get("message"), data.get("pid")
        priority, stamp = data.get("priority"), data.get("timestamp_us")
        # A chatty job sends tens of thousands of lines a second: the usual line is checked at
        # once, anything else field by field, for a message naming the field.
        if (
            type(message) is str
            and type(priority) is int
            and type(stamp) is int
            and (pid is None or type(pid) is int)
        ):
            return cls(message=message, pid=pid, priority=priority, timestamp_us=stamp, raw=data)
        return cls(
            message=fields.text("message"),
            pid=fields.opt_whole("pid"),
            priority=fields.whole("priority"),
            timestamp_us=fields.whole("timestamp_us"),
            raw=fields.data,
        )


@dataclass(frozen=True, slots=True)
class LogEvent(Model):
    """One event of the stream: a line (kind "log"), or the end (kind "end"). Kinds this client
    does not know (a newer agent's) have neither; `raw` keeps their data."""

    kind: str
    cursor: str | None  # resume after this event (Last-Event-ID)
    line: LogLine | None = None
    end: JobEnd | None = None

    @property
    def message(self) -> str:
        """A log event's line."""
        if self.line is None:
            raise ValueError(f"a {self.kind!r} event has no message")
        return self.line.message


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
    text = "\n".join(data_lines)
    try:
        data = json.loads(text)
    except ValueError:
        raise bad_answer(f"log event {kind!r}", "JSON", text) from None
    fields = Fields(data, f"{kind} event")
    return LogEvent(
        kind=kind,
        cursor=cursor,
        line=LogLine.read(fields) if kind == "log" else None,
        end=JobEnd.read(fields) if kind == "end" else None,
        raw=fields.data,
    )
