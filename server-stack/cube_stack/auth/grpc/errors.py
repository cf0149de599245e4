"""Errors the gRPC layer adds to the auth hierarchy of :mod:`cube_stack.auth.errors`.

::

    CubeError (cube_wire.errors)
    ├── AuthError (cube_stack.auth.errors)
    │   └── AuthServiceUnavailableError  auth.unavailable   503 / UNAVAILABLE
    └── CodegenError                     auth.grpc_codegen  (stubs could not be generated; at start)

:class:`AuthServiceUnavailableError` is what :class:`~cube_stack.auth.grpc.client.GrpcAuthClient` raises
when the auth service cannot answer (down, deadline exceeded, internal failure), so callers can fall back
to cached decisions and only then fail closed. Codes are stable; tests assert them, never the message text.
"""

from __future__ import annotations

from cube_stack.auth.errors import AuthError
from cube_wire.errors import CubeError


class AuthServiceUnavailableError(AuthError):
    """The auth service could not answer: unreachable, too slow or failing internally (503)."""

    code = "auth.unavailable"
    status = 503
    grpc_status = "UNAVAILABLE"


class CodegenError(CubeError):
    """``grpc_tools.protoc`` failed or produced output this package cannot load."""

    code = "auth.grpc_codegen"
