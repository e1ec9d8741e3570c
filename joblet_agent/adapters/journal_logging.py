"""Logging to journald with structured fields, so `journalctl JOB_ID=...` finds a job's story.

A record's extra attributes named like journal fields (JOB_ID, UNIT, AUDIT_CALLER, ...) become
fields of the entry. Used when stderr is connected to the journal (systemd sets JOURNAL_STREAM).
The native protocol is a datagram of KEY=VALUE lines (systemd.journal-fields(7)).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import struct
import sys

JOURNAL_SOCKET = "/run/systemd/journal/socket"
# The audit trail's own journal (journald's namespaces, systemd 245+): nothing a job writes goes
# there, so no flood of job output rotates it out. joblet.service wants its socket unit.
AUDIT_NAMESPACE = "joblet-audit"
_FIELD = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def encode_field(name: str, value: str) -> bytes:
    data = value.encode("utf-8", errors="replace")
    if b"\n" in data:
        # Binary-safe form: NAME\n, 64-bit little-endian length, value, \n.
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def namespace_socket(namespace: str) -> str:
    """The native-protocol socket of a journal namespace (systemd-journald@.socket)."""
    return f"/run/systemd/journal.{namespace}/socket"


class JournalHandler(logging.Handler):
    def __init__(self, identifier: str, *, path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.identifier = identifier
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "MESSAGE": self.format(record),
                "PRIORITY": str(_PRIORITY.get(record.levelno, 6)),
                "SYSLOG_IDENTIFIER": self.identifier,
                "LOGGER": record.name,
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
            }
            fields.update(
                {k: str(v) for k, v in vars(record).items() if _FIELD.match(k) and v is not None}
            )
            self.sock.sendto(b"".join(encode_field(k, v) for k, v in fields.items()), self.path)
        except OSError:
            self.handleError(record)


class AuditJournalHandler(JournalHandler):
    """A second copy of each audit entry (records with AUDIT=1), in the audit namespace. The
    system journal keeps the first, so `journalctl AUDIT=1` finds them as before."""

    def __init__(self, identifier: str) -> None:
        super().__init__(identifier, path=namespace_socket(AUDIT_NAMESPACE))
        self.addFilter(lambda record: bool(getattr(record, "AUDIT", None)))
        self._unreachable = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._unreachable:  # said once, on stderr (the system journal), not per entry
            self._unreachable = True
            print(f"joblet-agent: the audit journal {self.path} is unreachable", file=sys.stderr)


def journal_is_stderr() -> bool:
    """True when stderr is the journal stream systemd set up for this service."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = stream.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)
