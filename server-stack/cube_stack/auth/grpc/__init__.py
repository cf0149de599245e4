"""SuperMQ's ``auth.v1.AuthService`` over gRPC: our ``.proto``, run-time stubs, server and clients.

Public surface: :func:`serve_grpc` (start a ``grpc.aio`` server over an
:class:`~cube_stack.auth.AuthService`), :class:`GrpcAuthClient` (``authenticate``/``authorize``; the
proxy's ``AuthClient`` over it is :class:`cube_stack.proxy.authclient.GrpcProxyAuthClient`), the TLS
settings, the errors this layer adds and :func:`ensure_generated` (the stubs, compiled from
``proto/auth/v1/auth.proto`` on first use; nothing generated is committed).
"""

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use (PEP 562): the proxy in the CVM image uses the client, not the server (which
# needs the auth service and SQLAlchemy).
_EXPORTS = {
    "AuthServiceUnavailableError": "cube_stack.auth.grpc.errors",
    "AuthServicer": "cube_stack.auth.grpc.server",
    "ClientTLS": "cube_stack.auth.grpc.tls",
    "CodegenError": "cube_stack.auth.grpc.errors",
    "GrpcAuthClient": "cube_stack.auth.grpc.client",
    "GrpcAuthServer": "cube_stack.auth.grpc.server",
    "PatRequest": "cube_stack.auth.grpc.client",
    "PolicyRequest": "cube_stack.auth.grpc.client",
    "ServerTLS": "cube_stack.auth.grpc.tls",
    "Stubs": "cube_stack.auth.grpc.codegen",
    "ensure_generated": "cube_stack.auth.grpc.codegen",
    "serve_grpc": "cube_stack.auth.grpc.server",
}

if TYPE_CHECKING:
    from cube_stack.auth.grpc.client import GrpcAuthClient, PatRequest, PolicyRequest
    from cube_stack.auth.grpc.codegen import Stubs, ensure_generated
    from cube_stack.auth.grpc.errors import AuthServiceUnavailableError, CodegenError
    from cube_stack.auth.grpc.server import AuthServicer, GrpcAuthServer, serve_grpc
    from cube_stack.auth.grpc.tls import ClientTLS, ServerTLS


def __getattr__(name: str) -> Any:
    """Import the exported name's module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AuthServiceUnavailableError",
    "AuthServicer",
    "ClientTLS",
    "CodegenError",
    "GrpcAuthClient",
    "GrpcAuthServer",
    "PatRequest",
    "PolicyRequest",
    "ServerTLS",
    "Stubs",
    "ensure_generated",
    "serve_grpc",
]
