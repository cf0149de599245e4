"""JWT issuing and verification: claims, EdDSA pinning, tampering, expiry, key ids and rotation."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from cube_auth_testkit import START, Account, FakeClock, assert_error, bearer, sqlite_only

from cube_stack.auth import AuthenticationError, AuthService, TokenType, UserRole
from cube_stack.auth.keys import b64url, generate_signing_key
from cube_stack.auth.tokens import Claims, decode_token, encode_token, read_kid

ISSUER = "supermq.auth"


def _claims(**change: object) -> Claims:
    values: dict[str, object] = {
        "subject": str(uuid.uuid4()),
        "token_type": TokenType.ACCESS,
        "role": UserRole.USER,
        "verified": True,
        "issued_at": START,
        "expires_at": START + timedelta(hours=1),
    }
    values.update(change)
    return Claims(**values)  # type: ignore[arg-type]


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64json(data: dict[str, object]) -> str:
    return b64url(json.dumps(data).encode())


def _payload(token: str) -> dict[str, object]:
    part = _segments(token)[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # type: ignore[no-any-return]


def _verify(token: str, key=None, now=START) -> Claims:  # type: ignore[no-untyped-def]
    read_kid(token)
    return decode_token(token, (key or KEY).public_key, issuer=ISSUER, now=now)


KEY = generate_signing_key()


def _code(token: str, **kwargs: object) -> str:
    with pytest.raises(AuthenticationError) as info:
        _verify(token, **kwargs)
    return info.value.code


def test_round_trip_keeps_claims() -> None:
    claims = _claims(role=UserRole.ADMIN, jti="abc")
    token = encode_token(KEY, issuer=ISSUER, claims=claims)
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}
    assert _verify(token) == claims


def test_alg_none_is_refused() -> None:
    payload = _payload(encode_token(KEY, issuer=ISSUER, claims=_claims()))
    token = f"{_b64json({'alg': 'none', 'kid': KEY.kid})}.{_b64json(payload)}."
    assert _code(token) == "auth.invalid_token"


def test_hs256_signed_with_public_key_is_refused() -> None:
    payload = _payload(encode_token(KEY, issuer=ISSUER, claims=_claims()))
    raw_public = base64.urlsafe_b64decode(KEY.x + "=")
    for secret in (raw_public, KEY.x.encode()):
        forged = jwt.encode(payload, secret, algorithm="HS256", headers={"kid": KEY.kid})
        assert _code(forged) == "auth.invalid_token"
        # even past the header check, decoding pins EdDSA
        with pytest.raises(AuthenticationError):
            decode_token(forged, KEY.public_key, issuer=ISSUER, now=START)


def test_tampered_payload_is_refused() -> None:
    header, _, signature = _segments(encode_token(KEY, issuer=ISSUER, claims=_claims()))
    payload = _payload(encode_token(KEY, issuer=ISSUER, claims=_claims()))
    payload["role"] = 2
    assert _code(f"{header}.{_b64json(payload)}.{signature}") == "auth.invalid_token"


def test_other_key_with_same_kid_is_refused() -> None:
    other = generate_signing_key()
    token = jwt.encode(
        _payload(encode_token(KEY, issuer=ISSUER, claims=_claims())),
        other.private_key,
        algorithm="EdDSA",
        headers={"kid": KEY.kid},
    )
    assert _code(token) == "auth.invalid_token"


def test_expiry_uses_the_given_clock() -> None:
    token = encode_token(KEY, issuer=ISSUER, claims=_claims())
    assert _verify(token, now=START + timedelta(minutes=59)).subject
    assert _code(token, now=START + timedelta(hours=1)) == "auth.token_expired"


@pytest.mark.parametrize(
    ("change", "drop"),
    [
        ({"iss": "someone.else"}, None),
        ({"type": 4}, None),
        ({"type": True}, None),
        ({"role": 3}, None),
        ({"verified": "yes"}, None),
        ({"iat": int((START + timedelta(hours=2)).timestamp())}, None),
        ({"exp": "tomorrow"}, None),
        ({}, "sub"),
        ({}, "exp"),
        ({}, "type"),
        ({}, "role"),
        ({}, "verified"),
    ],
)
def test_malformed_claims_are_refused(change: dict[str, object], drop: str | None) -> None:
    payload = _payload(encode_token(KEY, issuer=ISSUER, claims=_claims())) | change
    if drop:
        payload.pop(drop)
    token = jwt.encode(payload, KEY.private_key, algorithm="EdDSA", headers={"kid": KEY.kid})
    assert _code(token) == "auth.invalid_token"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 9000, "eyJhbGciOiJFZERTQSJ9.e30.", "...."])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(AuthenticationError) as info:
        read_kid(token)
    assert info.value.code == "auth.invalid_token"


def test_missing_kid_is_refused() -> None:
    token = jwt.encode(_payload(encode_token(KEY, issuer=ISSUER, claims=_claims())), KEY.private_key, "EdDSA")
    assert _code(token) == "auth.invalid_token"


# over HTTP, with the real key store


async def test_issued_claims_match_supermq(client: httpx.AsyncClient, alice: Account) -> None:
    access, refresh = _payload(alice.access_token), _payload(alice.refresh_token)
    assert access["iss"] == refresh["iss"] == ISSUER
    assert access["sub"] == refresh["sub"] == alice.id
    assert (access["type"], refresh["type"]) == (0, 1)
    assert access["role"] == 1 and access["verified"] is True
    assert access["exp"] - access["iat"] == 3600  # type: ignore[operator]
    assert refresh["exp"] - refresh["iat"] == 24 * 3600  # type: ignore[operator]
    assert "jti" not in access and uuid.UUID(str(refresh["jti"]))


async def test_jwks_verifies_issued_tokens(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get("/keys/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=900, stale-while-revalidate=60"
    keys = response.json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "OKP" and keys[0]["crv"] == "Ed25519" and keys[0]["alg"] == "EdDSA"
    assert set(keys[0]) == {"kid", "kty", "alg", "use", "crv", "x"}
    assert keys[0]["kid"] == jwt.get_unverified_header(alice.access_token)["kid"]
    # an independent verifier (a proxy using the JWKS) accepts the token
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(
        alice.access_token, public, algorithms=["EdDSA"], issuer=ISSUER, options={"verify_exp": False}
    )
    assert claims["sub"] == alice.id


def _forge_variants(token: str, jwks_x: str) -> dict[str, str]:
    header, payload, signature = _segments(token)
    body = _payload(token)
    kid = jwt.get_unverified_header(token)["kid"]
    raw_public = base64.urlsafe_b64decode(jwks_x + "=")
    other = generate_signing_key()
    return {
        "tampered": f"{header}.{_b64json(body | {'role': 2})}.{signature}",
        "alg_none": f"{_b64json({'alg': 'none', 'kid': kid})}.{payload}.",
        "hs256_public_key": jwt.encode(body, raw_public, algorithm="HS256", headers={"kid": kid}),
        "unknown_kid": jwt.encode(body, other.private_key, algorithm="EdDSA", headers={"kid": other.kid}),
        "garbage": "not-a-token",
        "truncated": token[: len(token) // 2],
    }


@sqlite_only
@pytest.mark.parametrize(
    ("variant", "code"),
    [
        ("tampered", "auth.invalid_token"),
        ("alg_none", "auth.invalid_token"),
        ("hs256_public_key", "auth.invalid_token"),
        ("unknown_kid", "auth.unknown_key"),
        ("garbage", "auth.invalid_token"),
        ("truncated", "auth.invalid_token"),
    ],
)
async def test_forged_tokens_get_401(
    client: httpx.AsyncClient, alice: Account, variant: str, code: str
) -> None:
    x = (await client.get("/keys/.well-known/jwks.json")).json()["keys"][0]["x"]
    forged = _forge_variants(alice.access_token, x)[variant]
    assert_error(await client.get("/users/profile", headers=bearer(forged)), 401, code)


@sqlite_only
@pytest.mark.parametrize("header", ["Basic YWxpY2U6cHc=", "bearer {token}", "Bearer", "Bearer ", "{token}"])
async def test_malformed_authorization_header(client: httpx.AsyncClient, alice: Account, header: str) -> None:
    headers = {"Authorization": header.format(token=alice.access_token)}
    response = await client.get("/users/profile", headers=headers)
    assert_error(response, 401, "auth.missing_token")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_expired_access_token(client: httpx.AsyncClient, alice: Account, clock: FakeClock) -> None:
    clock.advance(minutes=59)
    assert (await client.get("/users/profile", headers=bearer(alice.access_token))).status_code == 200
    clock.advance(minutes=1)
    assert_error(
        await client.get("/users/profile", headers=bearer(alice.access_token)), 401, "auth.token_expired"
    )


async def test_expired_refresh_token(client: httpx.AsyncClient, alice: Account, clock: FakeClock) -> None:
    clock.advance(hours=24)
    headers = bearer(alice.refresh_token) | {"Content-Type": "application/json"}
    assert_error(await client.post("/users/tokens/refresh", headers=headers), 401, "auth.token_expired")


async def test_refresh_keeps_session_expiry(
    client: httpx.AsyncClient, alice: Account, clock: FakeClock
) -> None:
    clock.advance(hours=10)
    headers = bearer(alice.refresh_token) | {"Content-Type": "application/json"}
    pair = (await client.post("/users/tokens/refresh", headers=headers)).json()
    assert _payload(pair["refresh_token"])["exp"] == _payload(alice.refresh_token)["exp"]


async def test_refresh_token_is_never_a_bearer(client: httpx.AsyncClient, alice: Account) -> None:
    for path in ("/users/profile", "/domains", "/pats", "/users/tokens/refresh-tokens"):
        response = await client.get(path, headers=bearer(alice.refresh_token))
        assert_error(response, 401, "auth.wrong_token_type")


async def test_refresh_token_is_refused_by_authenticate(service: AuthService, alice: Account) -> None:
    with pytest.raises(AuthenticationError) as info:
        await service.authenticate(alice.refresh_token)
    assert info.value.code == "auth.wrong_token_type"


async def test_rotation_keeps_previous_key(
    client: httpx.AsyncClient, service: AuthService, alice: Account
) -> None:
    old_kid = jwt.get_unverified_header(alice.access_token)["kid"]
    new_kid = await service.rotate_signing_key()
    assert new_kid != old_kid
    kids = [k["kid"] for k in (await client.get("/keys/.well-known/jwks.json")).json()["keys"]]
    assert kids == [new_kid, old_kid]
    assert (await client.get("/users/profile", headers=bearer(alice.access_token))).status_code == 200
    fresh = await client.post("/users/tokens/issue", json={"username": "alice", "password": alice.password})
    assert jwt.get_unverified_header(fresh.json()["access_token"])["kid"] == new_kid
    await service.rotate_signing_key()
    assert_error(
        await client.get("/users/profile", headers=bearer(alice.access_token)), 401, "auth.unknown_key"
    )
    assert (
        await client.get("/users/profile", headers=bearer(fresh.json()["access_token"]))
    ).status_code == 200


async def test_replica_picks_up_rotation_after_interval(
    service: AuthService, settings, clock: FakeClock, alice: Account
) -> None:  # type: ignore[no-untyped-def]
    replica = await AuthService.open(settings, clock=clock)
    try:
        await replica.rotate_signing_key()
        pair = await replica.issue_tokens("alice", alice.password)
        with pytest.raises(AuthenticationError) as info:
            await service.authenticate(pair.access_token)
        assert info.value.code == "auth.unknown_key"  # reload is rate-limited
        clock.advance(seconds=settings.key_reload_interval.total_seconds())
        principal = await service.authenticate(pair.access_token)
        assert principal.user_id == alice.id
    finally:
        await replica.close()
