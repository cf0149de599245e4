"""The client of ``auth.v1.AuthService``: a typed gRPC client with SuperMQ's request shapes.

:class:`GrpcAuthClient` mirrors the two :class:`~cube_stack.auth.AuthService` methods a remote caller
needs (``authenticate(token) -> Principal`` and ``authorize(principal, domain_id, permission)``), plus
:meth:`GrpcAuthClient.authorize_policy` for SuperMQ-shaped questions. gRPC failures are translated once,
in :func:`_translate`, into the auth hierarchy: UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND and
INVALID_ARGUMENT keep the server's ``auth.*`` code; UNAVAILABLE, DEADLINE_EXCEEDED and anything else
become :class:`AuthServiceUnavailableError`.

The proxy's :class:`~cube_stack.proxy.authclient.AuthClient` over it lives in the proxy
(:class:`cube_stack.proxy.authclient.GrpcProxyAuthClient`): the auth package never imports the proxy.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from cube_stack.auth.errors import (
    AuthenticationError,
    AuthError,
    AuthorizationError,
    MalformedError,
    NotFoundError,
)
from cube_stack.auth.grpc.codegen import Stubs, ensure_generated
from cube_stack.auth.grpc.errors import AuthServiceUnavailableError
from cube_stack.auth.grpc.metadata import ERROR_CODE_KEY, SESSION_ID_KEY
from cube_stack.auth.grpc.tls import ClientTLS
from cube_stack.auth.models import Principal, TokenType, UserRole

DEFAULT_TIMEOUT = 5.0  # seconds per call (SuperMQ's default is 1 s; the proxy caches decisions anyway)
# gRPC backs off up to 120 s between reconnects to a server that was down; a proxy whose auth service
# comes back should see it within seconds, not minutes.
RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
_AUTH_CODE = re.compile(r"^auth\.[a-z_]{1,48}$")
_MAX_DETAILS = 200
_DENIALS: dict[grpc.StatusCode, type[AuthError]] = {
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthorizationError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: MalformedError,
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class PolicyRequest:
    """SuperMQ's ``PolicyReq``: may ``subject_type:subject`` have ``permission`` on ``object_type:object``."""

    subject: str
    permission: str
    object: str
    object_type: str = "domain"
    subject_type: str = "user"
    subject_kind: str = "users"
    domain: str = ""


@dataclass(frozen=True)
class PatRequest:
    """SuperMQ's ``PATReq``: the PAT the request was authenticated with, so its scopes apply."""

    pat_id: str
    user_id: str
    entity_id: str
    entity_type: str = "domains"
    domain: str = ""
    operation: str = ""


def _translate(exc: grpc.aio.AioRpcError, target: str) -> AuthError:
    """Return the auth error for a failed call (the one place gRPC errors are mapped)."""
    status = exc.code()
    kind = _DENIALS.get(status)
    if kind is None:
        name = status.name if status is not None else "UNKNOWN"
        return AuthServiceUnavailableError(f"the auth service at {target} did not answer ({name}); try again")
    codes = [value for key, value in exc.trailing_metadata() or () if key == ERROR_CODE_KEY]
    code = codes[0] if codes and isinstance(codes[0], str) and _AUTH_CODE.match(codes[0]) else None
    details = (exc.details() or "").strip()[:_MAX_DETAILS] or f"the auth service answered {status.name}"
    return kind(details, code=code)


class GrpcAuthClient:
    """An ``auth.v1.AuthService`` client; the channel opens on first use and closes in :meth:`aclose`."""

    def __init__(
        self,
        target: str,
        *,
        tls: ClientTLS | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        stubs: Stubs | None = None,
    ) -> None:
        self.target = target
        self._tls = tls
        self._timeout = timeout
        self._stubs = stubs if stubs is not None else ensure_generated()
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    def _service(self) -> Any:
        if self._stub is None:
            if self._tls is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=RECONNECT_OPTIONS)
            else:
                options = [*RECONNECT_OPTIONS, *self._tls.channel_options()]
                self._channel = grpc.aio.secure_channel(self.target, self._tls.credentials(), options=options)
            self._stub = self._stubs.auth_pb2_grpc.AuthServiceStub(self._channel)
        return self._stub

    async def _call(self, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, self.target) from None

    async def authenticate(self, token: str) -> Principal:
        """Return who ``token`` (access JWT or PAT) belongs to; ``scopes`` stay on the server."""
        request = self._stubs.auth_pb2.AuthNReq(token=token)
        reply = await self._call(lambda: self._service().Authenticate(request, timeout=self._timeout))
        try:
            role = UserRole(reply.user_role)
        except ValueError:
            raise AuthServiceUnavailableError(
                f"the auth service sent an unknown user_role {reply.user_role}"
            ) from None
        return Principal(
            user_id=reply.user_id,
            role=role,
            verified=reply.verified,
            token_type=TokenType.PAT if reply.id else TokenType.ACCESS,
            token_id=reply.id,
        )

    async def authorize(self, principal: Principal, domain_id: str, permission: str) -> None:
        """Return if ``principal`` has ``permission`` in ``domain_id``, else raise (as AuthService does)."""
        # Cube's shape: members are the domain-scoped subject "<domain>_<uid>", platform admins plain.
        subject = principal.user_id if principal.is_admin else f"{domain_id}_{principal.user_id}"
        policy = PolicyRequest(subject=subject, permission=permission, object=domain_id, domain=domain_id)
        pat = None
        if principal.is_pat:
            pat = PatRequest(
                pat_id=principal.token_id,
                user_id=principal.user_id,
                entity_id=domain_id,
                domain=domain_id,
                operation=permission,
            )
        await self.authorize_policy(policy, pat, session_id="" if principal.is_pat else principal.session_id)

    async def authorize_policy(
        self, policy: PolicyRequest, pat: PatRequest | None = None, *, session_id: str = ""
    ) -> None:
        """Ask ``Authorize`` a SuperMQ-shaped question; return if allowed, else raise.

        ``session_id`` (an access token's ``sid``) goes as ``cube-session-id`` metadata, so the service
        refuses a revoked session; ``auth.v1`` has no field for it.
        """
        pb2 = self._stubs.auth_pb2
        request = pb2.AuthZReq(
            policy_req=pb2.PolicyReq(
                domain=policy.domain,
                subject_type=policy.subject_type,
                subject_kind=policy.subject_kind,
                subject=policy.subject,
                permission=policy.permission,
                object=policy.object,
                object_type=policy.object_type,
            )
        )
        if pat is not None:
            request.pat_req.CopyFrom(
                pb2.PATReq(
                    pat_id=pat.pat_id,
                    domain=pat.domain,
                    operation=pat.operation,
                    user_id=pat.user_id,
                    entity_id=pat.entity_id,
                    entity_type=pat.entity_type,
                )
            )
        metadata = ((SESSION_ID_KEY, session_id),) if session_id else None
        reply = await self._call(
            lambda: self._service().Authorize(request, timeout=self._timeout, metadata=metadata)
        )
        if not reply.authorized:  # SuperMQ denies with a status; a bare "false" is denial all the same
            raise AuthorizationError("the auth service did not authorize", code="auth.forbidden")

    async def aclose(self) -> None:
        """Close the channel, cancelling calls still running."""
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> GrpcAuthClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
