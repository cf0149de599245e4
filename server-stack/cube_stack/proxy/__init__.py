"""The Cube-compatible proxy: Cube AI's routes, exact-permission authorization, chunk-by-chunk streaming.

Public surface: :func:`create_proxy_app` (the Starlette app), :class:`ProxySettings`, the
:class:`AuthClient` protocol with :class:`GrpcProxyAuthClient` (``auth.v1`` over gRPC, the JWKS over
HTTP: what a deployed proxy uses) and :class:`InProcessAuthClient` (``cube-stack up``), the
:class:`AttestationAgent` protocol, :class:`ProxyServer` (uvicorn with TLS), :class:`TlsIdentity` (the key
pair whose SPKI clients pin), the route table and the error hierarchy.
"""

from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.attestation import AttestationAgent
from cube_stack.proxy.authclient import (
    AuthClient,
    GrpcProxyAuthClient,
    HttpAuthClient,
    InProcessAuthClient,
    Subject,
)
from cube_stack.proxy.errors import (
    AuthUnavailableError,
    BadRequestError,
    CubeProxyError,
    ForbiddenError,
    MethodNotAllowedError,
    NotConfiguredError,
    PayloadTooLargeError,
    ProxySettingsError,
    RateLimitedError,
    RouteNotFoundError,
    RuntimeTimeoutError,
    RuntimeUnavailableError,
    UnauthenticatedError,
)
from cube_stack.proxy.routes import AUTH_PERMISSIONS, ROUTE_TABLE, Permission, ProxyRoute
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings
from cube_stack.tls_identity import TlsIdentity

__all__ = [
    "AUTH_PERMISSIONS",
    "ROUTE_TABLE",
    "AttestationAgent",
    "AuthClient",
    "AuthUnavailableError",
    "BadRequestError",
    "CubeProxyError",
    "ForbiddenError",
    "GrpcProxyAuthClient",
    "HttpAuthClient",
    "InProcessAuthClient",
    "MethodNotAllowedError",
    "NotConfiguredError",
    "PayloadTooLargeError",
    "Permission",
    "ProxyRoute",
    "ProxyServer",
    "ProxySettings",
    "ProxySettingsError",
    "RateLimitedError",
    "RouteNotFoundError",
    "RuntimeTimeoutError",
    "RuntimeUnavailableError",
    "Subject",
    "TlsIdentity",
    "UnauthenticatedError",
    "create_proxy_app",
]
