"""SuperMQ-compatible auth service: users, tokens, domains, roles and personal access tokens.

The public surface: :func:`create_auth_app` (the Starlette app), :class:`AuthService` (the core the
gRPC service and the proxy call: ``authenticate`` and ``authorize``), :class:`AuthSettings`, the
:class:`Principal` it returns and the error hierarchy. Everything else is an implementation module.
"""

from cube_stack.auth.app import create_auth_app
from cube_stack.auth.errors import (
    AuthenticationError,
    AuthError,
    AuthorizationError,
    AuthSettingsError,
    ConflictError,
    MalformedError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from cube_stack.auth.models import DomainStatus, Principal, Scope, TokenType, UserRole
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings

__all__ = [
    "AuthError",
    "AuthService",
    "AuthSettings",
    "AuthSettingsError",
    "AuthenticationError",
    "AuthorizationError",
    "ConflictError",
    "DomainStatus",
    "MalformedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "Principal",
    "Scope",
    "TokenType",
    "UnsupportedMediaTypeError",
    "UserRole",
    "create_auth_app",
]
