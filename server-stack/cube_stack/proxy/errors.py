"""The proxy's error hierarchy: one class per HTTP status, a stable ``code`` on every error.

Handlers and middleware raise these; :func:`error_response` renders ``{"message": ..., "code": ...}``
with the class's status (Cube and SuperMQ clients read ``message``; ``code`` is ours). Errors the auth
service reports keep the auth service's code (``auth.not_domain_member``), so the editor can tell "not a
member" from "domain disabled" without parsing text::

    CubeError (cube_wire.errors)
    └── CubeProxyError              cube_proxy.error              500
        ├── BadRequestError         cube_proxy.bad_request        400
        ├── UnauthenticatedError    cube_proxy.unauthenticated    401
        ├── ForbiddenError          cube_proxy.forbidden          403
        ├── RouteNotFoundError      cube_proxy.route_not_found    404
        ├── MethodNotAllowedError   cube_proxy.method_not_allowed 405
        ├── PayloadTooLargeError    cube_proxy.body_too_large     413
        ├── RateLimitedError        cube_proxy.rate_limited       429 (+ Retry-After)
        ├── NotConfiguredError      cube_proxy.not_configured     501
        ├── RuntimeUnavailableError cube_proxy.runtime_unavailable 502
        ├── AuthUnavailableError    cube_proxy.auth_unavailable   503
        ├── RuntimeTimeoutError     cube_proxy.runtime_timeout    504
        └── ProxySettingsError      cube_proxy.settings_invalid   (raised at start, never over HTTP)

Codes are stable and tests assert them, never the message text.
"""

from __future__ import annotations

import math

from starlette.responses import JSONResponse

from cube_wire.errors import CubeError


class CubeProxyError(CubeError):
    """An expected proxy failure: an HTTP status and a stable code."""

    code = "cube_proxy.error"
    status = 500

    def headers(self) -> dict[str, str]:
        """Return extra response headers this error needs."""
        return {}


class BadRequestError(CubeProxyError):
    """The request body or a parameter is malformed (400)."""

    code = "cube_proxy.bad_request"
    status = 400


class UnauthenticatedError(CubeProxyError):
    """No bearer token, or one that is invalid, expired or of the wrong type (401)."""

    code = "cube_proxy.unauthenticated"
    status = 401

    def headers(self) -> dict[str, str]:
        """Return the ``WWW-Authenticate`` challenge."""
        return {"WWW-Authenticate": 'Bearer realm="cube"'}


class ForbiddenError(CubeProxyError):
    """The caller is known but may not use this route in this domain (403)."""

    code = "cube_proxy.forbidden"
    status = 403


class RouteNotFoundError(CubeProxyError):
    """No route in the table matches the path (404); nothing is forwarded."""

    code = "cube_proxy.route_not_found"
    status = 404


class MethodNotAllowedError(CubeProxyError):
    """The path is known but not with this method (405)."""

    code = "cube_proxy.method_not_allowed"
    status = 405


class PayloadTooLargeError(CubeProxyError):
    """The request body is larger than ``max_body_bytes`` (413)."""

    code = "cube_proxy.body_too_large"
    status = 413


class RateLimitedError(CubeProxyError):
    """The user has used up their request budget; ``retry_after`` says for how long (429)."""

    code = "cube_proxy.rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Return ``Retry-After`` in whole seconds, at least one."""
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class NotConfiguredError(CubeProxyError):
    """A feature this deployment does not provide, such as attestation without an agent (501)."""

    code = "cube_proxy.not_configured"
    status = 501


class RuntimeUnavailableError(CubeProxyError):
    """The model runtime cannot be reached or broke the connection (502)."""

    code = "cube_proxy.runtime_unavailable"
    status = 502


class AuthUnavailableError(CubeProxyError):
    """The auth service cannot be reached and no cached decision covers the request (503)."""

    code = "cube_proxy.auth_unavailable"
    status = 503


class RuntimeTimeoutError(CubeProxyError):
    """The model runtime did not send its response headers in time (504)."""

    code = "cube_proxy.runtime_timeout"
    status = 504


class ProxySettingsError(CubeProxyError):
    """A setting has the wrong type or value; ``field`` names it (raised at start-up)."""

    code = "cube_proxy.settings_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"proxy setting '{field}': {message}")
        self.field = field


def error_response(error: CubeProxyError) -> JSONResponse:
    """Render ``error`` as ``{"message", "code"}`` with its status and headers."""
    return JSONResponse(
        {"message": error.message, "code": error.code}, status_code=error.status, headers=error.headers()
    )
