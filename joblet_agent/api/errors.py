"""The one table from error codes to HTTP statuses, and the one error body shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from joblet_agent.errors import ErrorCode, JobletError

logger = logging.getLogger(__name__)

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID: 400,
    ErrorCode.CONFIG: 500,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.AMBIGUOUS: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNSUPPORTED: 422,
    ErrorCode.SYSTEMD: 502,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.TOO_MANY: 429,
    ErrorCode.BUSY: 503,
    ErrorCode.METHOD: 405,
    ErrorCode.INTERNAL: 500,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: JobletError) -> web.Response:
    return web.json_response(error.to_dict(), status=HTTP_STATUS[error.code])


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except JobletError as exc:
        return error_response(exc)
    except json.JSONDecodeError as exc:
        return error_response(JobletError(ErrorCode.INVALID, f"request body: not JSON: {exc}"))
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(JobletError(ErrorCode.TOO_LARGE, exc.text or "request too large"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(
                JobletError(
                    ErrorCode.NOT_FOUND, f"no such endpoint: {request.method} {request.path}"
                )
            )
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            response = error_response(
                JobletError(
                    ErrorCode.METHOD,
                    f"method {request.method} is not allowed on {request.path}; allowed: {allowed}",
                )
            )
            response.headers["Allow"] = allowed
            return response
        raise
    except Exception:
        # A bug, not a user error: log it whole, answer in the one error shape.
        logger.exception("%s %s failed", request.method, request.path)
        return error_response(
            JobletError(
                ErrorCode.INTERNAL,
                "the agent failed to handle this request",
                hint="the agent's journal has the details (journalctl -u joblet)",
            )
        )
