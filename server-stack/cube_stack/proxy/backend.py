"""Bearer-token authentication and route authorization for the proxy's guarded routes.

:class:`BearerAuthBackend` answers one question per request: may this bearer token use this route's
permission in this domain? Access JWTs are verified locally (:mod:`.jwks`); anything else is a PAT and
goes to the auth service. Allow decisions are cached (:mod:`.cache`) by token hash, domain and
permission (and PAT authentication by token hash alone), so a warm request makes no auth call and
survives an auth outage until the entry expires; after that the request gets 503. The route is an
argument from :class:`~cube_stack.proxy.middleware.AuthGuard` (one per route of the table), never read
from the ASGI scope; the domain is the route's path parameter.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.authentication import AuthCredentials, BaseUser
from starlette.requests import HTTPConnection

from cube_stack.proxy.authclient import AuthClient, Subject
from cube_stack.proxy.cache import DecisionCache, token_digest
from cube_stack.proxy.errors import BadRequestError, UnauthenticatedError
from cube_stack.proxy.jwks import JwksVerifier, looks_like_jwt
from cube_stack.proxy.routes import AUTH_PERMISSIONS, DOMAIN, ProxyRoute

_DOMAIN_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NEVER = float("inf")
AUTHENTICATED = "authenticated"  # the cache's permission slot for "this PAT is valid" (domain "")


class ProxyUser(BaseUser):
    """The authenticated caller, as Starlette's ``request.user``."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject

    @property
    def is_authenticated(self) -> bool:
        """Return True: only authenticated users are ever built."""
        return True

    @property
    def display_name(self) -> str:
        """Return the user id (there is no name without another auth call)."""
        return self.subject.user_id

    @property
    def identity(self) -> str:
        """Return the user id."""
        return self.subject.user_id


def bearer_token(conn: HTTPConnection) -> str:
    """Return the bearer token of the request, or raise 401 naming what is wrong."""
    header = conn.headers.get("authorization")
    if not header:
        raise UnauthenticatedError("missing bearer token", code="cube_proxy.missing_token")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthenticatedError(
            "the Authorization header must be 'Bearer <token>'", code="cube_proxy.missing_token"
        )
    return token


class BearerAuthBackend:
    """Authenticates the bearer token and authorizes the scope's route in its domain."""

    def __init__(
        self, client: AuthClient, verifier: JwksVerifier, cache: DecisionCache, clock: Callable[[], float]
    ) -> None:
        self._client = client
        self._verifier = verifier
        self._cache = cache
        self._clock = clock

    async def authenticate_route(
        self, conn: HTTPConnection, route: ProxyRoute
    ) -> tuple[AuthCredentials, ProxyUser]:
        """Return the granted permission for ``route`` and the user, or raise 401/403/503.

        The route comes from the guard that serves it, as an argument: nothing a request or another
        middleware can put in the ASGI scope decides which permission is checked.
        """
        domain_id = conn.path_params[DOMAIN]
        if not _DOMAIN_ID.match(domain_id):
            raise BadRequestError("invalid domain id in the path", code="cube_proxy.invalid_domain")
        token = bearer_token(conn)
        permission = AUTH_PERMISSIONS[route.permission]
        subject = await self._decide(token, domain_id, permission)
        return AuthCredentials([route.permission.value]), ProxyUser(subject)

    async def _decide(self, token: str, domain_id: str, permission: str) -> Subject:
        digest = token_digest(token)
        not_after = _NEVER
        if looks_like_jwt(token):
            claims = await self._verifier.verify(token)  # local and cheap: expiry is always checked
            not_after = claims.expires_at
            subject: Subject | None = claims.to_subject()
        else:
            subject = None
        cached = self._cache.get(digest, domain_id, permission)
        if cached is not None:
            return cached
        if subject is None:
            subject = self._cache.get(digest, "", AUTHENTICATED)
        if subject is None:
            subject = await self._client.authenticate_pat(token)
            self._cache.put(digest, "", AUTHENTICATED, subject, not_after=not_after)
        await self._client.authorize(subject, domain_id, permission)
        self._cache.put(digest, domain_id, permission, subject, not_after=not_after)
        return subject
