"""The one error type of rnx and its Python client."""

from __future__ import annotations


class RnxError(Exception):
    """An error answered by the agent ({code, message, hint}, `status` its HTTP status) or met
    on the way to it (status 0). The agent's codes are docs/openapi.yaml's (invalid, not-found,
    forbidden, ...); rnx adds its own: config (rnx-config.yml), unreachable, unauthenticated
    (a TLS handshake refused), bad-answer (an answer this client cannot read), error (an HTTP
    error without a JSON body). rnx.exit_codes maps each code to the CLI's exit code."""

    def __init__(self, code: str, message: str, hint: str | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.status = status
