"""The one error type of rnx and its Python client."""

from __future__ import annotations


class RnxError(Exception):
    """An error answered by the agent ({code, message, hint}) or met on the way to it."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.status = status
