"""The ASGI app: :func:`create_auth_app` wires routes, pure-ASGI middleware and error mapping.

Error mapping happens here, once: an :class:`AuthError` becomes its status with
``{"message", "code"}``; Starlette's own 404/405 get the same shape; anything else is a 500 whose body
says nothing and whose log line names only the exception type.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cube_stack.auth.errors import AuthError
from cube_stack.auth.middleware import AccessLogMiddleware, BodyLimitMiddleware, error_response
from cube_stack.auth.models import Clock, utc_now
from cube_stack.auth.routes import ROUTES, new_instance_id
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings
from cube_stack.serving import ConnectionLimits, GuardedServer

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "auth.route_not_found", 405: "auth.method_not_allowed"}


async def _auth_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, AuthError):  # registered for AuthError only
        raise exc
    return error_response(exc)


async def _http_error(_request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    code = _HTTP_CODES.get(exc.status_code, f"auth.http_{exc.status_code}")
    return JSONResponse(
        {"message": exc.detail, "code": code}, status_code=exc.status_code, headers=exc.headers
    )


async def _internal_error(_request: Request, exc: Exception) -> Response:
    # The message of an arbitrary exception may quote input; log only its type.
    log.error("auth.internal_error type=%s", type(exc).__name__, extra={"event": "auth.internal_error"})
    return JSONResponse({"message": "internal error", "code": "auth.internal"}, status_code=500)


def create_auth_app(
    settings: AuthSettings, *, service: AuthService | None = None, clock: Clock = utc_now
) -> Starlette:
    """Return the auth ASGI app; it opens (and later closes) its own service unless one is given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if service is not None:
            yield
            return
        opened = await AuthService.open(settings, clock=clock)
        app.state.auth_service = opened
        try:
            yield
        finally:
            await opened.close()

    app = Starlette(
        routes=ROUTES,
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes),
        ],
        exception_handlers={
            AuthError: _auth_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
        lifespan=lifespan,
    )
    # Exact paths only: Starlette would answer a trailing slash with a 307 whose Location it builds from
    # the Host header, before any auth; without the redirect it is our JSON 404.
    app.router.redirect_slashes = False
    app.state.instance_id = new_instance_id()
    if service is not None:
        app.state.auth_service = service
    return app


def guarded_auth_server(service: AuthService) -> GuardedServer:
    """Return uvicorn serving the auth API behind the proxy's guard (deadlines, connection caps).

    ``cube-stack up`` and ``cube-stack auth serve`` both serve it this way; no X-Forwarded-For is
    believed unless the settings name trusted forwarders.
    """
    return GuardedServer(
        create_auth_app(service.settings, service=service),
        ConnectionLimits(),
        lifespan="on",
        log_config=None,
        access_log=False,
    )
