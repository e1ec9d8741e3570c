"""How many log streams are open, per caller and in all: each holds a connection and a
journalctl process, so one caller (a reader, even) could otherwise hold them all (audit M10)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from joblet_agent.domain.config import LogStreamPolicy
from joblet_agent.errors import ErrorCode, JobletError


class LogStreamSlots:
    def __init__(self, policy: LogStreamPolicy) -> None:
        self.policy = policy
        self._open: Counter[str] = Counter()

    @property
    def open(self) -> int:
        return self._open.total()

    def held_by(self, caller: str) -> int:
        return self._open[caller]

    @contextlib.contextmanager
    def admit(self, caller: str) -> Iterator[None]:
        """A slot for one stream of `caller` while the block runs, or a refusal: 429 when the
        caller has its share, 503 when the agent has all it serves."""
        held = self._open[caller]
        if held >= self.policy.max_per_caller:
            raise JobletError(
                ErrorCode.TOO_MANY,
                f"{caller} has {held} log streams open, the most one caller may have "
                f"({self.policy.max_per_caller})",
                hint="close one (each `rnx job run` or `rnx job logs -f` holds one); "
                "log_streams.max_per_caller in joblet.yml sets the limit",
            )
        if self.open >= self.policy.max:
            raise JobletError(
                ErrorCode.BUSY,
                f"{self.open} log streams are open, the most this agent serves at once",
                hint="try again when streams have ended; log_streams.max in joblet.yml sets "
                "the limit",
            )
        self._open[caller] += 1
        try:
            yield
        finally:
            self._open[caller] -= 1
            if not self._open[caller]:
                del self._open[caller]
