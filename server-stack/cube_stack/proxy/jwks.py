"""Local verification of SuperMQ access JWTs against the auth service's JWKS.

A warm request never calls the auth service: the JWKS is cached, refetched after ``max_age`` (the old
keys stay in use if that fails, so an auth outage does not lock out tokens already issued), and refetched
early when a token names an unknown ``kid`` -- at most once per ``min_refresh_interval``, so garbage kids
cannot turn into a stream of calls. Only Ed25519 JWKs are loaded and only ``alg: EdDSA`` is accepted, so
``alg: none`` and HS256 signed with the public key fail before any signature check; ``iss`` must match,
expiry is checked against the injected clock, and refresh tokens (``type`` 1) are refused.

A valid signature says only that the auth service issued the token once: whether its subject is still
an enabled user, with which role, and whether its session (``sid``) was revoked is for the auth
service's authorize call, which gets the session id in the :class:`Subject`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cube_stack.proxy.authclient import AuthClient, Subject
from cube_stack.proxy.errors import AuthUnavailableError, UnauthenticatedError

log = logging.getLogger(__name__)

ALGORITHM = "EdDSA"
ACCESS, REFRESH = 0, 1  # SuperMQ's `type` claim
ADMIN_ROLE = 2  # SuperMQ's `role` claim for a platform admin
MAX_TOKEN_LENGTH = 8192
MAX_CLOCK_SKEW = 60.0  # seconds an `iat` may lie in the future
NO_KEYS_RETRY = 1.0  # seconds between JWKS attempts while no keys were ever fetched


def looks_like_jwt(token: str) -> bool:
    """Return whether ``token`` has the JWS compact shape (anything else is treated as a PAT)."""
    return token.count(".") == 2 and not token.startswith("pat_")


def _invalid(message: str, code: str = "cube_proxy.invalid_token") -> UnauthenticatedError:
    return UnauthenticatedError(message, code=code)


def parse_jwks(document: dict[str, Any]) -> dict[str, Ed25519PublicKey]:
    """Return the Ed25519 verification keys of a JWKS by kid; other key types are ignored."""
    keys: dict[str, Ed25519PublicKey] = {}
    for jwk in document.get("keys", []):
        if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            continue
        if jwk.get("alg", ALGORITHM) != ALGORITHM or jwk.get("use", "sig") != "sig":
            continue
        kid, x = jwk.get("kid"), jwk.get("x")
        if not isinstance(kid, str) or not kid or not isinstance(x, str):
            continue
        try:
            raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
            keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, binascii.Error):
            log.warning("proxy.jwks_bad_key kid=%s", kid[:64], extra={"event": "proxy.jwks_bad_key"})
    return keys


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token that the proxy uses."""

    subject: str
    is_admin: bool
    verified: bool
    expires_at: float
    session_id: str = ""  # the `sid` claim: the refresh-token family (empty when the token has none)

    def to_subject(self) -> Subject:
        """Return the :class:`Subject` these claims describe."""
        return Subject(
            user_id=self.subject, is_admin=self.is_admin, verified=self.verified, session_id=self.session_id
        )


class JwksVerifier:
    """Verifies access JWTs locally with a cached, rate-limited JWKS from an :class:`AuthClient`."""

    def __init__(
        self,
        client: AuthClient,
        *,
        issuer: str,
        clock: Callable[[], float],
        max_age: float,
        min_refresh_interval: float,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._clock = clock
        self._max_age = max_age
        self._min_refresh = min_refresh_interval
        self._keys: dict[str, Ed25519PublicKey] | None = None
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            # With no keys at all retry after a second (the auth service may be starting); otherwise at
            # most once per min_refresh_interval.
            interval = self._min_refresh if self._keys is not None else min(self._min_refresh, NO_KEYS_RETRY)
            if self._attempted_at is not None and now - self._attempted_at < interval:
                if self._keys is None:
                    raise AuthUnavailableError("the auth service's signing keys are unavailable; try again")
                return
            self._attempted_at = now
            try:
                document = await self._client.jwks()
            except AuthUnavailableError:
                if self._keys is None:
                    raise
                log.warning("proxy.jwks_refresh_failed; keeping cached keys", extra={"event": "proxy.jwks"})
                return
            self._keys = parse_jwks(document)
            self._fetched_at = now

    async def _key(self, kid: str) -> Ed25519PublicKey:
        if self._keys is None or (
            self._fetched_at is not None and self._clock() - self._fetched_at >= self._max_age
        ):
            await self._refresh()
        if kid not in (self._keys or {}):
            await self._refresh()
        key = (self._keys or {}).get(kid)
        if key is None:
            raise _invalid("token signed by an unknown key", code="cube_proxy.unknown_key")
        return key

    async def verify(self, token: str) -> AccessClaims:
        """Return the claims of a valid access token, or raise 401 (503 if no JWKS can be had)."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise _invalid(
                f"token algorithm {str(alg)[:16]!r} is not accepted; expected EdDSA",
                code="cube_proxy.bad_algorithm",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _invalid("token has no key id (kid)")
        key = await self._key(kid)
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={
                    "verify_exp": False,  # checked below against the injected clock
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "require": ["iss", "sub", "iat", "exp"],
                },
            )
        except jwt.InvalidSignatureError:
            raise _invalid("token signature is invalid", code="cube_proxy.bad_signature") from None
        except jwt.InvalidIssuerError:
            raise _invalid("token issuer is not accepted", code="cube_proxy.bad_issuer") from None
        except jwt.PyJWTError:
            raise _invalid("malformed token") from None
        return self._claims(payload)

    def _claims(self, payload: dict[str, Any]) -> AccessClaims:
        now = self._clock()
        exp, iat = payload.get("exp"), payload.get("iat")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
            raise _invalid("token claims 'exp' and 'iat' must be numbers")
        if now >= float(exp):  # type: ignore[arg-type]
            raise _invalid("token expired; log in again", code="cube_proxy.token_expired")
        if float(iat) > now + MAX_CLOCK_SKEW:  # type: ignore[arg-type]
            raise _invalid("token issued in the future")
        kind = payload.get("type")
        if kind == REFRESH:
            raise _invalid(
                "a refresh token cannot be used as a bearer token; use the access token",
                code="cube_proxy.wrong_token_type",
            )
        if kind != ACCESS or isinstance(kind, bool):
            raise _invalid("token type is missing or not accepted", code="cube_proxy.wrong_token_type")
        subject = payload.get("sub")
        if not isinstance(subject, str) or not subject:
            raise _invalid("token subject is missing")
        session_id = payload.get("sid", "")
        if not isinstance(session_id, str):
            raise _invalid("token claim 'sid' must be a string")
        return AccessClaims(
            subject=subject,
            is_admin=payload.get("role") == ADMIN_ROLE,
            verified=payload.get("verified") is True,
            expires_at=float(exp),  # type: ignore[arg-type]
            session_id=session_id,
        )
