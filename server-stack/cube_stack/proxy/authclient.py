"""What the proxy asks the auth service, as a Protocol, and the two ways it asks.

:class:`AuthClient` has the three operations the proxy needs: the JWKS (access JWTs are verified
locally against it), PAT authentication, and authorization of a subject for a permission in a domain.

* :class:`GrpcProxyAuthClient` asks ``auth.v1.AuthService`` over gRPC (plain, TLS or mTLS), as SuperMQ's
  own services do: ``Authenticate`` for a PAT, ``Authorize`` for a permission (with the PAT's id, so its
  scopes apply, or an access token's ``sid`` as ``cube-session-id`` metadata, so a revoked login is
  refused). The JWKS comes over HTTP from :class:`HttpAuthClient`, as SuperMQ serves it. This is what
  ``python -m cube_stack.proxy`` uses; it works against our auth service and against SuperMQ.
* :class:`InProcessAuthClient` calls an :class:`~cube_stack.auth.AuthService` in the same process
  (``cube-stack up``), optionally still fetching the JWKS over HTTP.

:class:`HttpAuthClient` is the auth service's HTTP API as far as the proxy uses it: the JWKS at
``GET /keys/.well-known/jwks.json`` and nothing else (PATs and permissions are gRPC-only, in SuperMQ and
here). All of them raise only :mod:`cube_stack.proxy.errors`: 401/403 as the auth service worded them
(keeping its ``auth.*`` code), and :class:`AuthUnavailableError` when the service cannot answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import httpx

from cube_stack.auth.errors import (
    AuthenticationError,
    AuthError,
    AuthorizationError,
    MalformedError,
    NotFoundError,
)
from cube_stack.auth.grpc.client import GrpcAuthClient
from cube_stack.auth.grpc.tls import ClientTLS
from cube_stack.auth.models import Principal, TokenType, UserRole
from cube_stack.proxy.errors import (
    AuthUnavailableError,
    CubeProxyError,
    ForbiddenError,
    ProxySettingsError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    from cube_stack.auth import AuthService

JWKS_PATH = "/keys/.well-known/jwks.json"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Subject:
    """Who is calling: a user, whether a platform admin, and the PAT used (empty for a JWT).

    ``session_id`` is an access JWT's ``sid`` claim (its refresh-token family); the auth service refuses
    it once the family is revoked.
    """

    user_id: str
    is_admin: bool = False
    verified: bool = False
    pat_id: str = ""
    session_id: str = ""
    handle: Any = field(default=None, compare=False, repr=False)  # client-private (in-process: Principal)

    @property
    def is_pat(self) -> bool:
        """Return whether the subject authenticated with a personal access token."""
        return bool(self.pat_id)


@runtime_checkable
class AuthClient(Protocol):
    """The auth operations the proxy needs; implementations raise :class:`CubeProxyError` only."""

    async def jwks(self) -> dict[str, Any]:
        """Return the JWKS document of the keys that sign access tokens."""
        ...

    async def authenticate_pat(self, token: str) -> Subject:
        """Return the subject a personal access token belongs to (401 if it is not valid)."""
        ...

    async def authorize(self, subject: Subject, domain_id: str, permission: str) -> None:
        """Return if ``subject`` has ``permission`` (auth-service name) in ``domain_id``, else raise 403."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class HttpAuthClient:
    """The auth service's HTTP API at ``base_url``, for what the proxy needs of it: the JWKS."""

    def __init__(
        self, base_url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, trust_env=False
        )

    async def _call(self, method: str, path: str) -> httpx.Response:
        try:
            return await self._client.request(method, path)
        except httpx.HTTPError as exc:
            raise AuthUnavailableError(
                f"the auth service at {self.base_url} is unreachable ({type(exc).__name__}); try again later"
            ) from None

    async def jwks(self) -> dict[str, Any]:
        """Fetch ``GET /keys/.well-known/jwks.json``."""
        response = await self._call("GET", JWKS_PATH)
        if response.status_code != 200:
            raise AuthUnavailableError(f"the auth service answered HTTP {response.status_code} for its JWKS")
        try:
            document = response.json()
        except ValueError:
            raise AuthUnavailableError("the auth service sent a JWKS that is not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise AuthUnavailableError("the auth service sent a JWKS without a 'keys' list")
        return document

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def pat_subject(principal: Any) -> Subject:
    """Return the :class:`Subject` of an auth-service ``Principal`` that used a PAT; refuse any other token.

    The proxy verifies JWTs itself, so only PATs are sent to the auth service; an access token that
    comes back authenticated here was sent by mistake and is refused rather than trusted twice.
    """
    if not principal.is_pat:
        raise UnauthenticatedError("expected a personal access token", code="cube_proxy.invalid_token")
    return Subject(
        user_id=principal.user_id,
        is_admin=principal.is_admin,
        verified=principal.verified,
        pat_id=principal.token_id,
        handle=principal,
    )


class InProcessAuthClient:
    """An :class:`AuthClient` over an :class:`AuthService` in this process (the embedded stack).

    With ``jwks_client`` the JWKS is still fetched over HTTP (as a separate proxy would); otherwise it is
    read from the service.
    """

    def __init__(self, service: AuthService, *, jwks_client: HttpAuthClient | None = None) -> None:
        self._service = service
        self._jwks_client = jwks_client

    async def jwks(self) -> dict[str, Any]:
        """Return the service's JWKS (over HTTP when a ``jwks_client`` was given)."""
        if self._jwks_client is not None:
            return await self._jwks_client.jwks()
        document: dict[str, Any] = await self._guard(self._service.jwks())
        return document

    async def authenticate_pat(self, token: str) -> Subject:
        """Authenticate a PAT with :meth:`AuthService.authenticate`."""
        return pat_subject(await self._guard(self._service.authenticate(token)))

    async def authorize(self, subject: Subject, domain_id: str, permission: str) -> None:
        """Authorize with :meth:`AuthService.authorize`."""
        from cube_stack.auth import Principal, TokenType, UserRole

        principal = subject.handle
        if not isinstance(principal, Principal):
            if subject.is_pat:
                raise ForbiddenError("this PAT was not authenticated by this client", code="auth.pat_scope")
            principal = Principal(
                user_id=subject.user_id,
                role=UserRole.ADMIN if subject.is_admin else UserRole.USER,
                verified=subject.verified,
                token_type=TokenType.ACCESS,
                session_id=subject.session_id,
            )
        # authorize reads the user again: the role and existence come from the database, not the token.
        await self._guard(self._service.authorize(principal, domain_id, permission))

    async def aclose(self) -> None:
        """Close the JWKS client, if any; the service belongs to the caller."""
        if self._jwks_client is not None:
            await self._jwks_client.aclose()

    @staticmethod
    async def _guard(call: Any) -> Any:
        """Await ``call``, translating the auth service's errors at this one boundary."""
        from sqlalchemy.exc import SQLAlchemyError

        from cube_stack.auth import AuthenticationError, AuthorizationError, NotFoundError

        try:
            return await call
        except AuthenticationError as exc:
            raise UnauthenticatedError(exc.message, code=exc.code) from None
        except (AuthorizationError, NotFoundError) as exc:
            raise ForbiddenError(exc.message, code=exc.code) from None
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            raise AuthUnavailableError(
                f"the auth service's store failed ({type(exc).__name__}); try again later"
            ) from None


class JwksSource(Protocol):
    """Where :class:`GrpcProxyAuthClient` gets the JWKS, e.g. :class:`HttpAuthClient`."""

    async def jwks(self) -> dict[str, Any]:
        """Return the JWKS document."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def _proxy_guard(call: Awaitable[_T]) -> _T:
    """Await ``call``; translate auth errors into the proxy's hierarchy at this one boundary."""
    try:
        return await call
    except AuthenticationError as exc:
        raise UnauthenticatedError(exc.message, code=exc.code) from None
    except (AuthorizationError, NotFoundError) as exc:
        raise ForbiddenError(exc.message, code=exc.code) from None
    except MalformedError as exc:  # the proxy asked something malformed: a bug, not a denial
        raise CubeProxyError(exc.message, code=exc.code) from None
    except AuthError as exc:
        raise AuthUnavailableError(exc.message) from None


class GrpcProxyAuthClient:
    """The proxy's :class:`~cube_stack.proxy.AuthClient` over ``auth.v1`` gRPC plus a JWKS source."""

    def __init__(
        self, client: GrpcAuthClient, *, jwks: JwksSource | Callable[[], Awaitable[dict[str, Any]]]
    ) -> None:
        self._client = client
        self._jwks = jwks

    async def jwks(self) -> dict[str, Any]:
        """Return the JWKS from the configured source."""
        fetch = self._jwks if callable(self._jwks) else self._jwks.jwks
        return await _proxy_guard(fetch())

    async def authenticate_pat(self, token: str) -> Subject:
        """Authenticate a PAT over gRPC ``Authenticate``; a JWT is refused (the proxy checks those)."""
        return pat_subject(await _proxy_guard(self._client.authenticate(token)))

    async def authorize(self, subject: Subject, domain_id: str, permission: str) -> None:
        """Authorize over gRPC ``Authorize`` (with the PAT's id when the subject used one)."""
        principal = subject.handle
        if not isinstance(principal, Principal):
            principal = Principal(
                user_id=subject.user_id,
                role=UserRole.ADMIN if subject.is_admin else UserRole.USER,
                verified=subject.verified,
                token_type=TokenType.PAT if subject.is_pat else TokenType.ACCESS,
                token_id=subject.pat_id,
                session_id=subject.session_id,
            )
        await _proxy_guard(self._client.authorize(principal, domain_id, permission))

    async def aclose(self) -> None:
        """Close the gRPC channel and the JWKS source (if it has ``aclose``)."""
        try:
            await self._client.aclose()
        finally:
            close = getattr(self._jwks, "aclose", None)
            if close is not None:
                await close()


def grpc_client_tls(ca: str, cert: str = "", key: str = "", server_name: str = "") -> ClientTLS | None:
    """Return the TLS settings of the proxy's gRPC channel from PEM file paths (no CA: plain gRPC)."""
    if not ca:
        return None
    files = {"auth_grpc_ca": ca, "auth_grpc_client_cert": cert, "auth_grpc_client_key": key}
    pem: dict[str, bytes | None] = {}
    for name, path in files.items():
        try:
            pem[name] = Path(path).read_bytes() if path else None
        except OSError as exc:
            raise ProxySettingsError(name, f"cannot read {path}: {exc.strerror}") from None
    return ClientTLS(
        root_ca=pem["auth_grpc_ca"],
        cert_chain=pem["auth_grpc_client_cert"],
        private_key=pem["auth_grpc_client_key"],
        server_name=server_name or None,
    )
