"""The ``auth.v1.AuthService`` gRPC server: SuperMQ's wire API in front of :class:`AuthService`.

``Authenticate`` turns a token into ``AuthNRes`` (``id`` is the PAT id, empty for a JWT, so SuperMQ's
"a non-empty id means a PAT" rule holds). ``Authorize`` reads SuperMQ's ``PolicyReq`` -- subject
``user:<uid>`` or ``user:<domain>_<uid>``, object ``domain:<id>`` or ``platform:<platform id>`` -- plus
the optional ``PATReq`` whose scopes then apply, and answers ``authorized: true`` or a
``PERMISSION_DENIED`` status, as SuperMQ does. The user's role comes from the store, never the caller.

``auth.v1`` has no field for an access token's session (its ``sid``: the refresh-token family), and
none of ``PolicyReq``'s fits without changing what a SuperMQ server would read, so a caller that
verified a JWT itself sends it as request metadata, :data:`SESSION_ID_KEY`; the service then refuses
(UNAUTHENTICATED, ``auth.session_revoked``) a session whose family was revoked. SuperMQ ignores the key.

Errors are mapped once, in :meth:`AuthServicer._guard`: an :class:`AuthError` becomes its
``grpc_status`` with the message as details and its stable code in the ``cube-error-code`` trailer; a
store failure becomes ``UNAVAILABLE``. No token is ever logged or echoed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from sqlalchemy.exc import SQLAlchemyError

from cube_stack.auth.errors import AuthenticationError, AuthError, AuthorizationError, MalformedError
from cube_stack.auth.grpc.codegen import Stubs, ensure_generated
from cube_stack.auth.grpc.errors import AuthServiceUnavailableError
from cube_stack.auth.grpc.metadata import ERROR_CODE_KEY, SESSION_ID_KEY
from cube_stack.auth.grpc.tls import ServerTLS
from cube_stack.auth.models import Principal, TokenType, UserStatus
from cube_stack.auth.permissions import normalize_permission
from cube_stack.auth.service import AuthService

log = logging.getLogger(__name__)

_MAX_SESSION_ID = 64
DEFAULT_PLATFORM_ID = "supermq"  # the object of platform-admin checks (SuperMQ v0.19.1, as Cube used)
MAX_MESSAGE_BYTES = 64 * 1024  # a request holds a token and a few ids; refuse anything larger
_REQUIRED_POLICY_FIELDS = ("subject_type", "subject", "object_type", "object", "permission")
_REQUIRED_PAT_FIELDS = ("user_id", "entity_id", "entity_type")
_T = TypeVar("_T")


class AuthServicer:
    """Serves ``auth.v1.AuthService`` from an :class:`AuthService` (see the module docstring)."""

    def __init__(self, service: AuthService, stubs: Stubs, *, platform_id: str = DEFAULT_PLATFORM_ID) -> None:
        self._service = service
        self._pb2 = stubs.auth_pb2
        self._platform_id = platform_id

    async def Authenticate(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Return who the token belongs to, or abort with UNAUTHENTICATED."""
        principal = await self._guard(context, "authenticate", self._service.authenticate(request.token))
        log.debug(
            "auth.grpc.authenticated user_id=%s pat=%s",
            principal.user_id,
            principal.is_pat,
            extra={"event": "auth.grpc.authenticated", "user_id": principal.user_id},
        )
        return self._pb2.AuthNRes(
            id=principal.token_id,
            user_id=principal.user_id,
            user_role=int(principal.role),
            verified=principal.verified,
        )

    async def Authorize(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """Return ``authorized: true``, or abort with PERMISSION_DENIED (or INVALID_ARGUMENT)."""
        await self._guard(context, "authorize", self._authorize(request, _session_id(context)))
        return self._pb2.AuthZRes(authorized=True)

    async def _authorize(self, request: Any, session_id: str) -> None:
        policy = request.policy_req
        missing = [name for name in _REQUIRED_POLICY_FIELDS if not getattr(policy, name)]
        if missing:
            raise MalformedError(f"policy_req is missing {', '.join(missing)}", code="auth.malformed")
        if policy.subject_type != "user":
            raise MalformedError(
                f"unsupported policy_req.subject_type {policy.subject_type!r}: expected 'user'",
                code="auth.unsupported_subject",
            )
        pat = request.pat_req if request.HasField("pat_req") and request.pat_req.pat_id else None
        user_id = policy.subject
        if policy.object_type == "domain" and user_id.startswith(f"{policy.object}_"):
            user_id = user_id.removeprefix(f"{policy.object}_")  # Cube's domain-scoped "<domain>_<uid>"
        principal = await self._principal(user_id, pat)
        if session_id and not principal.is_pat:
            principal = dataclasses.replace(principal, session_id=session_id)
        if policy.object_type == "domain":
            if pat is not None and pat.domain and pat.domain != policy.object:
                raise MalformedError("pat_req.domain differs from policy_req.object", code="auth.malformed")
            await self._service.authorize(principal, policy.object, policy.permission)
        elif policy.object_type == "platform":
            if principal.session_id:  # the domain path checks it inside AuthService.authorize
                principal = await self._service.current(principal)
            self._authorize_platform(principal, policy)
        else:
            raise MalformedError(
                f"unsupported policy_req.object_type {policy.object_type!r}: expected 'domain' or 'platform'",
                code="auth.unsupported_object",
            )

    def _authorize_platform(self, principal: Principal, policy: Any) -> None:
        if policy.object != self._platform_id:
            raise MalformedError(
                f"policy_req.object {policy.object!r} is not the platform id {self._platform_id!r}",
                code="auth.malformed",
            )
        if normalize_permission(policy.permission) != "admin":
            raise MalformedError(
                f"permission {policy.permission!r} cannot be checked on the platform: expected 'admin'",
                code="auth.unknown_permission",
            )
        if principal.is_pat:
            raise AuthorizationError(
                "personal access tokens cannot act as a platform admin", code="auth.pat_scope"
            )
        if not principal.is_admin:
            raise AuthorizationError("platform administrator required", code="auth.admin_required")

    async def _principal(self, user_id: str, pat: Any | None) -> Principal:
        """Rebuild the principal from the store: the caller's claims about role and scopes are not trusted."""
        store = self._service.store
        user = await store.get_user(user_id)
        if user is None:
            raise AuthorizationError("the policy subject is not a known user", code="auth.user_not_found")
        if user.status is not UserStatus.ENABLED:
            raise AuthorizationError("user is disabled", code="auth.user_disabled")
        verified = user.verified_at is not None
        if pat is None:
            return Principal(user.id, user.role, verified, TokenType.ACCESS)
        missing = [f"pat_req.{name}" for name in _REQUIRED_PAT_FIELDS if not getattr(pat, name)]
        if missing:
            raise MalformedError(f"{', '.join(missing)} required with pat_req.pat_id", code="auth.malformed")
        if pat.user_id != user.id:
            raise MalformedError("pat_req.user_id differs from the policy subject", code="auth.malformed")
        found = await store.get_pat(pat.pat_id)
        if found is None or found[0].user_id != user.id:
            raise AuthenticationError("invalid personal access token", code="auth.invalid_token")
        token = found[0]
        if token.revoked:
            raise AuthenticationError("personal access token is revoked", code="auth.pat_revoked")
        if self._service.now() >= token.expires_at:
            raise AuthenticationError("personal access token expired", code="auth.pat_expired")
        return Principal(user.id, user.role, verified, TokenType.PAT, token_id=token.id, scopes=token.scopes)

    @staticmethod
    async def _guard(context: grpc.aio.ServicerContext[Any, Any], rpc: str, call: Awaitable[_T]) -> _T:
        """Await ``call``; map our errors to a gRPC status at this one boundary."""
        try:
            return await call
        except AuthError as exc:
            error: AuthError = exc
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.warning("auth.grpc.store_failed rpc=%s error=%s", rpc, type(exc).__name__)
            error = AuthServiceUnavailableError("the auth store is unavailable; try again later")
        log.info(
            "auth.grpc.refused rpc=%s code=%s",
            rpc,
            error.code,
            extra={"event": "auth.grpc.refused", "rpc": rpc, "code": error.code},
        )
        await context.abort(
            grpc.StatusCode[error.grpc_status],
            error.message,
            trailing_metadata=((ERROR_CODE_KEY, error.code),),
        )
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


@dataclass(frozen=True)
class GrpcAuthServer:
    """A started ``auth.v1`` server: where it listens and how to stop it."""

    server: grpc.aio.Server
    host: str
    port: int

    @property
    def target(self) -> str:
        """Return the ``host:port`` a client dials."""
        return f"{_host(self.host)}:{self.port}"

    async def stop(self, grace: float | None = 1.0) -> None:
        """Stop accepting calls, let running ones finish within ``grace`` seconds, and wait."""
        await self.server.stop(grace)
        await self.server.wait_for_termination()


def _session_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """Return the ``cube-session-id`` request metadata (empty when absent or implausible)."""
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_ID_KEY and isinstance(value, str) and 0 < len(value) <= _MAX_SESSION_ID:
            return value
    return ""


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


async def serve_grpc(
    service: AuthService,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ServerTLS | None = None,
    *,
    platform_id: str = DEFAULT_PLATFORM_ID,
    stubs: Stubs | None = None,
) -> GrpcAuthServer:
    """Start serving ``auth.v1.AuthService`` on ``host:port`` (0: any free port); TLS/mTLS with ``tls``."""
    stubs = stubs if stubs is not None else ensure_generated()
    server = grpc.aio.server(
        options=[
            ("grpc.so_reuseport", 0),  # a taken port must fail, not be silently shared
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    stubs.auth_pb2_grpc.add_AuthServiceServicer_to_server(
        AuthServicer(service, stubs, platform_id=platform_id), server
    )
    address = f"{_host(host)}:{port}"
    bound = (
        server.add_secure_port(address, tls.credentials())
        if tls is not None
        else server.add_insecure_port(address)
    )
    if bound == 0:  # older grpcio reports a failed bind this way instead of raising
        raise OSError(f"cannot listen on {address}")
    await server.start()
    log.info("auth.grpc.listening address=%s:%s tls=%s", host, bound, tls is not None)
    return GrpcAuthServer(server, host, bound)
