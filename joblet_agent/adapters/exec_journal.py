"""Exec output into the journal, one entry per line, under the job's unit: the only place the
agent writes entries for someone else.

journalctl -u joblet-job-<id> shows them with the job's own output: it matches
OBJECT_SYSTEMD_UNIT= on entries from uid 0 (the agent is root). EXEC_ID= tells which exec a
line came from, EXEC_STREAM= whether it was stdout or stderr (a terminal's is "tty"). The job's
log stream (rnx job log) reads _SYSTEMD_UNIT= only: an exec's output is not the job's.
"""

from __future__ import annotations

import logging
import socket

from joblet_agent.adapters.journal_logging import JOURNAL_SOCKET, encode_field

logger = logging.getLogger(__name__)


class NativeExecJournal:
    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self._path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._warned = False

    def line(self, unit: str, job_id: str, exec_id: str, stream: str, text: bytes) -> None:
        message = text.decode("utf-8", "replace")
        fields = (
            ("MESSAGE", message),
            ("PRIORITY", "6"),  # as a job's own stdout and stderr
            ("SYSLOG_IDENTIFIER", "joblet-exec"),
            ("OBJECT_SYSTEMD_UNIT", unit),
            ("JOB_ID", job_id),
            ("EXEC_ID", exec_id),
            ("EXEC_STREAM", stream),
        )
        try:
            self._sock.sendto(b"".join(encode_field(k, v) for k, v in fields), self._path)
        except OSError as exc:
            if not self._warned:  # once: the journal going away must not flood the agent's log
                self._warned = True
                logger.warning("exec output cannot reach the journal: %s", exc)
