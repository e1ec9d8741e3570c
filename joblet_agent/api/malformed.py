"""Malformed HTTP requests in the log: one warning line each, not an error with a traceback.

aiohttp logs every request it cannot parse (a NUL byte in a header, a bad request line) with
logger.exception, so any client with a certificate could fill the journal with tracebacks of
aiohttp's own parser (api-fuzz finding 12). Those are the client's mistakes, answered 400 by
aiohttp; errors of the agent itself keep their traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web import json_response
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from joblet_agent.errors import ErrorCode, JobletError, excerpt

SERVER_LOGGER = "aiohttp.server"
_MOST_CHARS = 200  # aiohttp's message may quote the offending line


class MalformedRequestLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            why = " ".join((error.message or type(error).__name__).split())[:_MOST_CHARS]
            record.msg = "malformed HTTP request from %s: %s"
            record.args = (peer or "a local client", why)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_malformed_requests_in_one_line() -> None:
    """Installs the filter on aiohttp's server logger, once."""
    logger = logging.getLogger(SERVER_LOGGER)
    if not any(isinstance(f, MalformedRequestLine) for f in logger.filters):
        logger.addFilter(MalformedRequestLine())


class _JsonErrors(RequestHandler):
    """aiohttp's protocol, answering what it cannot parse in JSON (see answer_in_json)."""

    __slots__ = ()  # the same layout as RequestHandler's, so a handler's class can be this one

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        answered = super().handle_error(request, status, exc, message)  # logs it (one line)
        code = {400: ErrorCode.INVALID, 413: ErrorCode.TOO_LARGE}.get(status, ErrorCode.INTERNAL)
        why = ""
        if isinstance(exc, HttpProcessingError) and exc.message:
            why = ": " + excerpt(" ".join(exc.message.split()))
        text = (
            "the agent failed to handle this request"
            if code is ErrorCode.INTERNAL
            else f"the request is not valid HTTP{why}"
        )
        response = json_response(JobletError(code, text).to_dict(), status=answered.status)
        response.force_close()
        return response


def answer_in_json(handler: RequestHandler) -> RequestHandler:
    """aiohttp answers a request it cannot parse (a request line or header over 8190 bytes, a
    NUL in a header) in text/plain, before any route or middleware; the API's errors are JSON
    Error bodies (docs/openapi.yaml), so the agent's connections answer these in JSON too, with
    the status aiohttp chose. RequestHandler has __slots__: its class is swapped, not a method.
    Found by tests/integration/test_api_fuzz.py."""
    handler.__class__ = _JsonErrors
    return handler
