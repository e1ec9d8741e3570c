"""Malformed HTTP requests in the log: one warning line each, not an error with a traceback.

aiohttp logs every request it cannot parse (a NUL byte in a header, a bad request line) with
logger.exception, so any client with a certificate could fill the journal with tracebacks of
aiohttp's own parser (api-fuzz finding 12). Those are the client's mistakes, answered 400 by
aiohttp; errors of the agent itself keep their traceback.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

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
