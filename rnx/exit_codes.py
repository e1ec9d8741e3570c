"""The one table from error codes to rnx exit codes (documented in README and `rnx --help`;
rnx.cli applies it). `rnx job run` without --detach exits with the job's own exit code instead.
"""

from __future__ import annotations

EXIT_CODES: dict[str, int] = {
    "invalid": 2,
    "not-found": 3,
    "ambiguous": 3,
    "conflict": 4,
    "unsupported": 5,
    "unauthenticated": 6,
    "forbidden": 6,
    "unreachable": 7,
    "session-lost": 7,  # an exec or attach whose agent went away (the job keeps running)
    "too-large": 2,
    "systemd": 8,
    "config": 9,
}
OTHER = 1  # any other code: the agent's internal, busy, too-many; an answer rnx cannot read
INTERRUPTED = 130  # Ctrl-C while following a job (128 + SIGINT, as shells say)


def exit_code_for(code: str) -> int:
    return EXIT_CODES.get(code, OTHER)
