"""SuperMQ's ``auth.v1.AuthService`` over gRPC: our ``.proto``, run-time stubs, server and clients.

Public surface: :func:`serve_grpc` (start a ``grpc.aio`` server over an
:class:`~cube_stack.auth.AuthService`), :class:`GrpcAuthClient` (``authenticate``/``authorize``; the
proxy's ``AuthClient`` over it is :class:`cube_stack.proxy.authclient.GrpcProxyAuthClient`), the TLS
settings, the errors this layer adds and :func:`ensure_generated` (the stubs, compiled from
``proto/auth/v1/auth.proto`` on first use; nothing generated is committed).
"""

from cube_stack.auth.grpc.client import GrpcAuthClient, PatRequest, PolicyRequest
from cube_stack.auth.grpc.codegen import Stubs, ensure_generated
from cube_stack.auth.grpc.errors import AuthServiceUnavailableError, CodegenError
from cube_stack.auth.grpc.server import AuthServicer, GrpcAuthServer, serve_grpc
from cube_stack.auth.grpc.tls import ClientTLS, ServerTLS

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
