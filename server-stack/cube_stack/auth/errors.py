"""The auth service's error hierarchy: one class per HTTP status, a stable ``code`` on every error.

Handlers never build error responses themselves; they raise one of these and the app maps it to
``{"message": ..., "code": ...}`` with the class's status (SuperMQ writes ``{"message": ...}``; the extra
``code`` key is ours and is ignored by SuperMQ clients). The gRPC service maps the same classes to gRPC
status codes through :attr:`AuthError.grpc_status`::

    CubeError (cube_wire.errors)
    └── AuthError                      auth.*              500 / INTERNAL
        ├── MalformedError             auth.malformed      400 / INVALID_ARGUMENT
        ├── AuthenticationError        auth.unauthenticated 401 / UNAUTHENTICATED
        ├── AuthorizationError         auth.forbidden      403 / PERMISSION_DENIED
        ├── NotFoundError              auth.not_found      404 / NOT_FOUND
        ├── ConflictError              auth.conflict       409 / ALREADY_EXISTS
        ├── PayloadTooLargeError       auth.body_too_large 413 / INVALID_ARGUMENT
        ├── UnsupportedMediaTypeError  auth.unsupported_content_type 415 / INVALID_ARGUMENT
        ├── TooManyAttemptsError       auth.too_many_attempts 429 / RESOURCE_EXHAUSTED (+ Retry-After)
        ├── AuthSettingsError          auth.settings_invalid (raised at start, never over HTTP)
        └── SigningKeyError            auth.key_dir_permissions, auth.key_file_permissions, auth.key_owner,
                                       auth.signing_key_missing, auth.signing_key_mismatch,
                                       auth.signing_key_invalid (at start: the key files are unsafe
                                       or do not match the database)

Codes are stable and tests assert them, never the message text.
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class AuthError(CubeError):
    """An expected auth failure: an HTTP status, a gRPC status name and a stable code."""

    code = "auth.error"
    status = 500
    grpc_status = "INTERNAL"


class MalformedError(AuthError):
    """The request is malformed: bad JSON, a missing or invalid field (400)."""

    code = "auth.malformed"
    status = 400
    grpc_status = "INVALID_ARGUMENT"


class AuthenticationError(AuthError):
    """Credentials are missing or invalid: no token, a bad token, a wrong password (401)."""

    code = "auth.unauthenticated"
    status = 401
    grpc_status = "UNAUTHENTICATED"


class AuthorizationError(AuthError):
    """The caller is known but may not do this (403)."""

    code = "auth.forbidden"
    status = 403
    grpc_status = "PERMISSION_DENIED"


class NotFoundError(AuthError):
    """The entity does not exist, or the caller may not know that it does (404)."""

    code = "auth.not_found"
    status = 404
    grpc_status = "NOT_FOUND"


class ConflictError(AuthError):
    """The entity already exists: a duplicate username, email or domain route (409)."""

    code = "auth.conflict"
    status = 409
    grpc_status = "ALREADY_EXISTS"


class PayloadTooLargeError(AuthError):
    """The request body is larger than the configured cap (413)."""

    code = "auth.body_too_large"
    status = 413
    grpc_status = "INVALID_ARGUMENT"


class UnsupportedMediaTypeError(AuthError):
    """A JSON body was sent without ``Content-Type: application/json`` (415)."""

    code = "auth.unsupported_content_type"
    status = 415
    grpc_status = "INVALID_ARGUMENT"


class AuthSettingsError(AuthError):
    """A setting has the wrong type or value; ``field`` names it (raised at start-up)."""

    code = "auth.settings_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"auth setting '{field}': {message}")
        self.field = field


class TooManyAttemptsError(AuthError):
    """Too many failed logins for this account or address: retry after ``retry_after`` seconds (429)."""

    code = "auth.too_many_attempts"
    status = 429
    grpc_status = "RESOURCE_EXHAUSTED"

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed login attempts; try again in {retry_after} s")
        self.retry_after = retry_after


class SigningKeyError(AuthError):
    """A signing key file or its directory is unsafe, missing or does not match the database.

    Raised at start, like :class:`AuthSettingsError`; ``path`` names the file or directory at fault and
    the message says what to run (a ``chmod``) or what to restore.
    """

    code = "auth.signing_key_invalid"

    def __init__(self, message: str, *, code: str, path: str) -> None:
        super().__init__(message, code=code)
        self.path = path
