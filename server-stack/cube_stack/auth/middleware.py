"""Pure-ASGI middleware of the auth app: a request-body cap and a structured access log.

Neither touches headers or bodies beyond counting bytes. The access log records the method, the matched
route *template* (``/pats/{patID}``, never the raw path, query string or headers), status and latency, so
no token can reach it even when a client puts one in the URL.
"""

from __future__ import annotations

import logging
import time

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cube_stack import body_limit
from cube_stack.auth.errors import AuthError, MalformedError, PayloadTooLargeError, TooManyAttemptsError

log = logging.getLogger("cube_stack.auth.access")


def error_response(error: AuthError) -> JSONResponse:
    """Render an :class:`AuthError` as SuperMQ's ``{"message"}`` body plus our stable ``code``."""
    headers = {"WWW-Authenticate": 'Bearer realm="cube"'} if error.status == 401 else None
    if isinstance(error, TooManyAttemptsError):
        headers = {"Retry-After": str(error.retry_after)}
    return JSONResponse(
        {"message": error.message, "code": error.code}, status_code=error.status, headers=headers
    )


class BodyLimitMiddleware(body_limit.BodyLimitMiddleware):
    """The shared body cap, answering in the auth service's error format."""

    def too_large(self) -> PayloadTooLargeError:
        """Return the 413 error."""
        return PayloadTooLargeError(f"request body is larger than {self.max_bytes} bytes")

    def bad_length(self) -> MalformedError:
        """Return the 400 error for a malformed Content-Length."""
        return MalformedError("invalid Content-Length")

    async def refuse(self, error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``error`` as ``{"message", "code"}``."""
        assert isinstance(error, AuthError)
        await error_response(error)(scope, receive, send)


class AccessLogMiddleware:
    """Log one line per HTTP request: method, path, status and milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request and log its outcome."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            elapsed = round((time.perf_counter() - started) * 1000, 1)
            route = scope.get("route")
            method, path = scope["method"], getattr(route, "path", "<unmatched>")
            log.info(
                "auth.http method=%s path=%s status=%s ms=%s",
                method,
                path,
                status,
                elapsed,
                extra={"event": "auth.http", "method": method, "path": path, "status": status, "ms": elapsed},
            )
