"""SuperMQ-compatible auth service: users, tokens, domains, roles and personal access tokens.

The public surface: :func:`create_auth_app` (the Starlette app), :class:`AuthService` (the core the
gRPC service and the proxy call: ``authenticate`` and ``authorize``), :class:`AuthSettings`, the
:class:`Principal` it returns and the error hierarchy. Everything else is an implementation module.
"""

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562): the proxy in the CVM image needs this package's errors, models and
# gRPC client, not the auth service itself (SQLAlchemy, argon2), which the image does not carry.
_EXPORTS = {
    "AuthError": "cube_stack.auth.errors",
    "AuthService": "cube_stack.auth.service",
    "AuthSettings": "cube_stack.auth.settings",
    "AuthSettingsError": "cube_stack.auth.errors",
    "AuthenticationError": "cube_stack.auth.errors",
    "AuthorizationError": "cube_stack.auth.errors",
    "ConflictError": "cube_stack.auth.errors",
    "DomainStatus": "cube_stack.auth.models",
    "MalformedError": "cube_stack.auth.errors",
    "NotFoundError": "cube_stack.auth.errors",
    "PayloadTooLargeError": "cube_stack.auth.errors",
    "Principal": "cube_stack.auth.models",
    "Scope": "cube_stack.auth.models",
    "TokenType": "cube_stack.auth.models",
    "UnsupportedMediaTypeError": "cube_stack.auth.errors",
    "UserRole": "cube_stack.auth.models",
    "create_auth_app": "cube_stack.auth.app",
}

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    """Import the exported name's module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
