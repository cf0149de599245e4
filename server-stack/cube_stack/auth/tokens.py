"""SuperMQ-compatible JWTs: EdDSA-signed, ``kid`` in the header, ``iss`` = "supermq.auth".

Claims follow SuperMQ's ``BuildToken``: ``iss``, ``iat``, ``exp``, ``sub`` (user id), ``type`` (0 access,
1 refresh), ``role`` (1 user, 2 admin), ``verified`` and, for refresh tokens only, ``jti``. Ours add
``sid`` to access tokens: the refresh-token family (login) they were minted in, so revoking the family
revokes them too (SuperMQ clients ignore unknown claims). Verification
pins ``algorithms=["EdDSA"]`` and resolves the key by ``kid`` only, so ``alg: none``, HS256 signed with the
public key bytes and unknown keys all fail; expiry is checked against the injected clock, not PyJWT's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cube_stack.auth.errors import AuthenticationError
from cube_stack.auth.keys import ALGORITHM, SigningKey
from cube_stack.auth.models import TokenType, UserRole

MAX_TOKEN_LENGTH = 8192  # longer bearer strings are rejected before parsing
MAX_CLOCK_SKEW = timedelta(seconds=60)  # an `iat` further in the future than this is refused


@dataclass(frozen=True)
class Claims:
    """The verified claims of a token."""

    subject: str
    token_type: TokenType
    role: UserRole
    verified: bool
    issued_at: datetime
    expires_at: datetime
    jti: str = ""
    session_id: str = ""  # the `sid` claim: the token family of an access token


def _invalid(message: str, code: str = "auth.invalid_token") -> AuthenticationError:
    return AuthenticationError(message, code=code)


def encode_token(key: SigningKey, *, issuer: str, claims: Claims) -> str:
    """Sign ``claims`` with ``key`` (EdDSA, ``kid`` header)."""
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": claims.subject,
        "iat": int(claims.issued_at.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
        "type": int(claims.token_type),
        "role": int(claims.role),
        "verified": claims.verified,
    }
    if claims.jti:
        payload["jti"] = claims.jti
    if claims.session_id:
        payload["sid"] = claims.session_id
    return jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})


def read_kid(token: str) -> str:
    """Return the ``kid`` of a structurally valid EdDSA JWT, or raise ``auth.invalid_token``."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _invalid("malformed token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("malformed token") from None
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise _invalid(f"token algorithm {str(alg)[:16]!r} is not accepted; expected EdDSA")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("token has no key id (kid)")
    return kid


def _number(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"token claim {name!r} is missing or not a number")
    return float(value)


def decode_token(token: str, public_key: Ed25519PublicKey, *, issuer: str, now: datetime) -> Claims:
    """Verify signature, issuer, shape and expiry of ``token`` and return its claims."""
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            issuer=issuer,
            options={
                "verify_exp": False,  # checked below against the injected clock
                "verify_iat": False,
                "verify_nbf": False,
                "require": ["iss", "sub", "iat", "exp"],
            },
        )
    except jwt.InvalidSignatureError:
        raise _invalid("token signature is invalid") from None
    except jwt.InvalidIssuerError:
        raise _invalid("token issuer is not accepted") from None
    except jwt.PyJWTError:
        raise _invalid("malformed token") from None
    expires = _number(payload, "exp")
    issued = _number(payload, "iat")
    if now.timestamp() >= expires:
        raise _invalid("token expired", code="auth.token_expired")
    if issued > now.timestamp() + MAX_CLOCK_SKEW.total_seconds():
        raise _invalid("token issued in the future")
    subject, kind, role, verified = (payload.get(k) for k in ("sub", "type", "role", "verified"))
    if not isinstance(subject, str) or not subject:
        raise _invalid("token subject is missing")
    if isinstance(kind, bool) or kind not in (TokenType.ACCESS, TokenType.REFRESH):
        raise _invalid("token type is missing or not accepted")
    if isinstance(role, bool) or role not in (UserRole.USER, UserRole.ADMIN):
        raise _invalid("token role is missing or invalid")
    if not isinstance(verified, bool):
        raise _invalid("token claim 'verified' is missing")
    jti = payload.get("jti", "")
    if not isinstance(jti, str):
        raise _invalid("token id (jti) is not a string")
    session_id = payload.get("sid", "")
    if not isinstance(session_id, str):
        raise _invalid("token session (sid) is not a string")
    return Claims(
        subject=subject,
        token_type=TokenType(kind),
        role=UserRole(role),
        verified=verified,
        issued_at=datetime.fromtimestamp(issued, now.tzinfo),
        expires_at=datetime.fromtimestamp(expires, now.tzinfo),
        jti=jti,
        session_id=session_id,
    )
