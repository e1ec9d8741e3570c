"""`--runtime=` values: `python-3.11-ml`, `python-3.11-ml@1.0.2`, and `java:17` (= java-17)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._-]{0,62}|[a-z][a-z0-9_]{0,31}:[a-z0-9][a-z0-9._-]{0,30})"
    r"(?:@(?P<release>[0-9A-Za-z][0-9A-Za-z.+~_-]{0,63}))?$"
)
REFERENCE_RULE = "a runtime name, optionally with @release (python-3.11-ml, java:17, node-18@1.0.0)"


@dataclass(frozen=True, slots=True)
class RuntimeRef:
    name: str  # the canonical name: java:17 is java-17
    release: str | None = None

    def __str__(self) -> str:
        return self.name + (f"@{self.release}" if self.release else "")


def parse_reference(text: str) -> RuntimeRef:
    """Raises ValueError saying what is allowed."""
    match = _REFERENCE.match(text)
    if not match:
        raise ValueError(REFERENCE_RULE)
    # The design document's `java:17` form: language, then its version.
    return RuntimeRef(match["name"].replace(":", "-", 1), match["release"])
