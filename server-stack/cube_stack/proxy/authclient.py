"""What the proxy asks the auth service, as a Protocol, and two ways to ask it.

:class:`AuthClient` has the three operations the proxy needs: the JWKS (access JWTs are verified
locally against it), PAT authentication, and authorization of a subject for a permission in a domain.

* :class:`HttpAuthClient` talks HTTP to a base URL. The JWKS comes from SuperMQ's
  ``GET /keys/.well-known/jwks.json``. SuperMQ serves PAT authentication and authorization over gRPC
  only, and our auth service has no HTTP equivalent yet, so this client calls the two internal endpoints
  the auth service is asked to add (the contract the gRPC client will replace)::

      POST /internal/authenticate   {"token": "<pat>"}
        200 {"user_id", "role": "user"|"admin", "verified": bool, "pat_id"}   401 {"message", "code"}
      POST /internal/authorize      {"user_id", "role", "pat_id", "session_id", "domain_id", "permission"}
        204                                               401/403/404 {"message", "code"}

  ``session_id`` is the access token's ``sid`` claim (its refresh-token family; empty for a PAT): the
  auth service answers 401 once that family is revoked. ``role`` is informational; the service decides
  with the role its database holds and refuses a ``user_id`` that names no enabled user.

* :class:`InProcessAuthClient` calls an :class:`~cube_stack.auth.AuthService` in the same process
  (``cube-stack up``), optionally still fetching the JWKS over HTTP.

Both raise only :mod:`cube_stack.proxy.errors`: 401/403 as the auth service worded them (keeping its
``auth.*`` code), and :class:`AuthUnavailableError` when the service cannot answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from cube_stack.proxy.errors import (
    AuthUnavailableError,
    CubeProxyError,
    ForbiddenError,
    UnauthenticatedError,
)

if TYPE_CHECKING:
    from cube_stack.auth import AuthService

JWKS_PATH = "/keys/.well-known/jwks.json"
AUTHENTICATE_PATH = "/internal/authenticate"
AUTHORIZE_PATH = "/internal/authorize"
_AUTH_CODE = re.compile(r"^auth\.[a-z_]{1,48}$")
_MAX_MESSAGE = 200


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


def _remote_error(response: httpx.Response) -> CubeProxyError:
    """Translate an auth-service error response into the proxy's hierarchy."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    code = body.get("code") if isinstance(body, dict) else None
    text = message[:_MAX_MESSAGE] if isinstance(message, str) and message else None
    code = code if isinstance(code, str) and _AUTH_CODE.match(code) else None
    if response.status_code == 401:
        return UnauthenticatedError(text or "token not accepted by the auth service", code=code)
    if response.status_code in (403, 404):
        return ForbiddenError(text or "access denied by the auth service", code=code)
    return AuthUnavailableError(f"the auth service answered HTTP {response.status_code}; try again later")


class HttpAuthClient:
    """An :class:`AuthClient` over the auth service's HTTP API at ``base_url``."""

    def __init__(
        self, base_url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, trust_env=False
        )

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=body)
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

    async def authenticate_pat(self, token: str) -> Subject:
        """Ask ``POST /internal/authenticate`` who a PAT belongs to."""
        response = await self._call("POST", AUTHENTICATE_PATH, {"token": token})
        if response.status_code != 200:
            raise _remote_error(response)
        try:
            body = response.json()
            return Subject(
                user_id=str(body["user_id"]),
                is_admin=body.get("role") == "admin",
                verified=bool(body.get("verified", False)),
                pat_id=str(body.get("pat_id") or ""),
            )
        except (ValueError, KeyError, TypeError):
            raise AuthUnavailableError("the auth service sent a malformed authentication answer") from None

    async def authorize(self, subject: Subject, domain_id: str, permission: str) -> None:
        """Ask ``POST /internal/authorize``; return on 204/200."""
        body = {
            "user_id": subject.user_id,
            "role": "admin" if subject.is_admin else "user",
            "pat_id": subject.pat_id,
            "session_id": subject.session_id,
            "domain_id": domain_id,
            "permission": permission,
        }
        response = await self._call("POST", AUTHORIZE_PATH, body)
        if response.status_code not in (200, 204):
            raise _remote_error(response)

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
