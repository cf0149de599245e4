"""Security: every way a bearer token can be wrong, exact route permissions, and the request limits."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cube_proxy_testkit import AuthStack, MakeProxy, ManualClock, bearer, llm_scope

from cube_stack.proxy import ROUTE_TABLE, Permission
from tests.support.scripted_backend import ScriptedBackend

GENERATE = {"model": "m", "prompt": "p"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _part(token: str, index: int) -> dict[str, Any]:
    raw = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))  # type: ignore[no-any-return]


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return ".".join(_b64(json.dumps(p).encode()) for p in (header, payload)) + "." + _b64(signature)


async def _post(proxy: Any, domain: str, token: str | None, suffix: str = "/api/generate") -> httpx.Response:
    headers = bearer(token) if token is not None else {}
    response: httpx.Response = await proxy.client.post(f"/{domain}{suffix}", json=GENERATE, headers=headers)
    return response


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


async def test_bad_jwts_are_401_with_clear_codes(
    make_proxy: MakeProxy, stack: AuthStack, clock: ManualClock, scripted_backend: ScriptedBackend
) -> None:
    good = stack.bob.access_token
    header, payload = _part(good, 0), _part(good, 1)
    public = stack.alice.access_token  # any real token's kid names the real key
    async with httpx.AsyncClient() as client:
        jwks = (await client.get(f"{stack.url}/keys/.well-known/jwks.json")).json()
    x = jwks["keys"][0]["x"]
    other_key = Ed25519PrivateKey.generate()
    cases = {
        "alg none": (_forge({"alg": "none", "kid": header["kid"]}, payload, b""), "cube_proxy.bad_algorithm"),
        # HS256 keyed with the public key's bytes: the classic algorithm-confusion forgery.
        "hs256 with public key": (
            jwt.encode(payload, base64.urlsafe_b64decode(x + "=="), "HS256", headers={"kid": header["kid"]}),
            "cube_proxy.bad_algorithm",
        ),
        "other key same kid": (
            jwt.encode(payload, other_key, "EdDSA", headers={"kid": header["kid"]}),
            "cube_proxy.bad_signature",
        ),
        "tampered payload": (
            ".".join(
                [
                    good.split(".")[0],
                    _b64(json.dumps({**payload, "sub": stack.alice.id}).encode()),
                    good.split(".")[2],
                ]
            ),
            "cube_proxy.bad_signature",
        ),
        "garbage three parts": ("aaa.bbb.ccc", "cube_proxy.invalid_token"),
        "refresh token": (stack.bob.refresh_token, "cube_proxy.wrong_token_type"),
    }
    assert public
    async with make_proxy() as proxy:
        for name, (token, code) in cases.items():
            response = await _post(proxy, stack.domain, token)
            assert response.status_code == 401, (name, response.text)
            assert response.json()["code"] == code, name
            assert response.headers["www-authenticate"].startswith("Bearer")
        _assert_error(await _post(proxy, stack.domain, None), 401, "cube_proxy.missing_token")
        basic = await proxy.client.post(
            f"/{stack.domain}/api/generate", json=GENERATE, headers={"Authorization": "Basic eDp5"}
        )
        _assert_error(basic, 401, "cube_proxy.missing_token")
        _assert_error(await _post(proxy, stack.domain, "not-a-token"), 401, "auth.invalid_token")
        clock.advance(2 * 3600)  # access tokens live one hour
        expired = await _post(proxy, stack.domain, good)
        _assert_error(expired, 401, "cube_proxy.token_expired")
        assert "log in again" in expired.json()["message"]
    assert scripted_backend.request_count == 0  # nothing reached the runtime


async def test_tokens_signed_by_the_real_key_with_bad_claims_are_refused(
    make_proxy: MakeProxy, own_stack: AuthStack, clock: ManualClock
) -> None:
    ring = await own_stack.service.keyring()
    key, kid = ring.active.private_key, ring.active.kid
    now = int(clock())
    base = {
        "iss": "supermq.auth",
        "sub": own_stack.bob.id,
        "iat": now,
        "exp": now + 600,
        "type": 0,
        "role": 1,
    }
    cases = {
        "wrong issuer": ({**base, "iss": "evil"}, "cube_proxy.bad_issuer"),
        "no type": ({k: v for k, v in base.items() if k != "type"}, "cube_proxy.wrong_token_type"),
        "refresh type": ({**base, "type": 1}, "cube_proxy.wrong_token_type"),
        "no exp": ({k: v for k, v in base.items() if k != "exp"}, "cube_proxy.invalid_token"),
        "future iat": ({**base, "iat": now + 3600, "exp": now + 7200}, "cube_proxy.invalid_token"),
    }
    async with make_proxy(auth_url=own_stack.url, auth_grpc=own_stack.grpc_target) as proxy:
        signed = jwt.encode(base, key, "EdDSA", headers={"kid": kid})
        own_stack.secrets.add(signed)
        assert (await _post(proxy, own_stack.domain, signed)).status_code == 200  # the control case
        for name, (claims, code) in cases.items():
            token = jwt.encode(claims, key, "EdDSA", headers={"kid": kid})
            own_stack.secrets.add(token)
            response = await _post(proxy, own_stack.domain, token)
            assert response.status_code == 401 and response.json()["code"] == code, (name, response.text)


async def test_pats_revoked_out_of_scope_or_for_another_domain_are_refused(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    completions = await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")])
    revoked = await stack.make_pat(stack.bob, [llm_scope(stack.domain, "completions")], name="old")
    elsewhere = await stack.make_pat(stack.bob, [llm_scope(str(uuid.uuid4()), "completions")], name="x")
    await stack.revoke_pat(stack.bob, revoked["id"])
    async with make_proxy() as proxy:
        assert (await _post(proxy, stack.domain, completions["secret"])).status_code == 200
        assert (await _post(proxy, stack.domain, completions["secret"], "/v1/completions")).status_code == 200
        for suffix in ("/api/chat", "/v1/chat/completions"):  # completions only: no chat
            _assert_error(
                await _post(proxy, stack.domain, completions["secret"], suffix), 403, "auth.pat_scope"
            )
        _assert_error(await _post(proxy, stack.domain, revoked["secret"]), 401, "auth.pat_revoked")
        _assert_error(await _post(proxy, stack.domain, elsewhere["secret"]), 403, "auth.pat_scope")
        forged = completions["secret"][:-4] + "0000"
        _assert_error(await _post(proxy, stack.domain, forged), 401, "auth.invalid_token")


async def test_non_members_and_disabled_domains_are_403(make_proxy: MakeProxy, stack: AuthStack) -> None:
    disabled = await stack.make_domain(f"d{uuid.uuid4().hex[:8]}", [stack.bob])
    async with make_proxy() as proxy:
        assert (await _post(proxy, disabled, stack.bob.access_token)).status_code == 200
        await stack.disable_domain(disabled)
        clock_free = await _post(proxy, disabled, stack.bob.access_token, "/api/chat")  # not cached yet
        _assert_error(clock_free, 403, "auth.domain_disabled")
        not_member = await _post(proxy, stack.domain, stack.carol.access_token)
        _assert_error(not_member, 403, "auth.not_domain_member")
        assert "not a member" in not_member.json()["message"]
        _assert_error(
            await _post(proxy, str(uuid.uuid4()), stack.bob.access_token), 403, "auth.not_domain_member"
        )
        _assert_error(
            await _post(proxy, "bad%20id", stack.bob.access_token), 400, "cube_proxy.invalid_domain"
        )


EXPECTED_TABLE = {
    ("POST", "/api/generate"): Permission.COMPLETIONS,
    ("POST", "/api/chat"): Permission.CHAT,
    ("POST", "/api/embed"): Permission.EMBEDDINGS,
    ("POST", "/api/embeddings"): Permission.EMBEDDINGS,
    ("GET", "/api/tags"): Permission.MODELS_READ,
    ("POST", "/api/show"): Permission.MODELS_READ,
    ("POST", "/v1/completions"): Permission.COMPLETIONS,
    ("POST", "/v1/chat/completions"): Permission.CHAT,
    ("POST", "/v1/embeddings"): Permission.EMBEDDINGS,
    ("GET", "/v1/models"): Permission.MODELS_READ,
    ("POST", "/attestation"): None,  # public: attested before any token is sent
    ("POST", "/api/pull"): Permission.MANAGE,
    ("POST", "/api/create"): Permission.MANAGE,
    ("POST", "/api/copy"): Permission.MANAGE,
    ("DELETE", "/api/delete"): Permission.MANAGE,
}
SCOPE_OPERATION = {
    Permission.CHAT: "chat",
    Permission.COMPLETIONS: "completions",
    Permission.EMBEDDINGS: "embeddings",
    Permission.MODELS_READ: "models/read",
}


def test_route_table_is_exactly_the_documented_one() -> None:
    assert {(r.method, r.suffix): r.permission for r in ROUTE_TABLE} == EXPECTED_TABLE
    assert len(ROUTE_TABLE) == len(EXPECTED_TABLE)


async def test_each_route_needs_exactly_its_permission(make_proxy: MakeProxy, stack: AuthStack) -> None:
    forwarded = [r for r in ROUTE_TABLE if r.kind == "forward" and not r.admin]
    async with make_proxy() as proxy:
        for permission, operation in SCOPE_OPERATION.items():
            pat = (await stack.make_pat(stack.bob, [llm_scope(stack.domain, operation)]))["secret"]
            for route in forwarded:
                response = await proxy.client.request(
                    route.method,
                    f"/{stack.domain}{route.suffix}",
                    json=GENERATE if route.method == "POST" else None,
                    headers=bearer(pat),
                )
                if route.permission is permission:
                    assert response.status_code not in (401, 403), (permission, route, response.text)
                else:
                    assert response.status_code == 403, (permission, route, response.text)
                    assert response.json()["code"] == "auth.pat_scope"


async def test_admin_routes_need_manage_and_are_off_by_default(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    async with make_proxy() as proxy:
        _assert_error(
            await _post(proxy, stack.domain, stack.alice.access_token, "/api/pull"),
            404,
            "cube_proxy.route_not_found",
        )
    async with make_proxy(admin_routes=True) as proxy:
        _assert_error(
            await _post(proxy, stack.domain, stack.bob.access_token, "/api/pull"),
            403,
            "auth.permission_denied",
        )
        owner = await _post(proxy, stack.domain, stack.alice.access_token, "/api/pull")
        assert owner.status_code not in (401, 403)  # forwarded (the scripted runtime has no such route)


UNKNOWN_SUFFIXES = (
    "/api/chatx",
    "/api/chat/extra",
    "/x/api/chat",
    "/api/ps",
    "/v1/audio/transcriptions",
    "/api/../api/chat2",
    "/attestation/policy",
)


async def test_unknown_paths_are_404_and_never_forwarded(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    async with make_proxy() as proxy:
        for suffix in UNKNOWN_SUFFIXES:
            response = await _post(proxy, stack.domain, stack.bob.access_token, suffix)
            _assert_error(response, 404, "cube_proxy.route_not_found")
            assert suffix not in response.text  # the path is not echoed
        _assert_error(await proxy.client.get("/nothing"), 404, "cube_proxy.route_not_found")
        _assert_error(await proxy.client.get("/"), 404, "cube_proxy.route_not_found")
    assert scripted_backend.request_count == 0


async def test_wrong_method_is_405(make_proxy: MakeProxy, stack: AuthStack) -> None:
    async with make_proxy() as proxy:
        response = await proxy.client.get(f"/{stack.domain}/api/chat", headers=bearer(stack.bob.access_token))
    _assert_error(response, 405, "cube_proxy.method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_oversized_bodies_are_413(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    big = b'{"prompt": "' + b"x" * 5000 + b'"}'

    async def chunked() -> Any:  # no Content-Length: the cap applies while reading
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    async with make_proxy(max_body_bytes=4096) as proxy:
        url = f"/{stack.domain}/api/generate"
        declared = await proxy.client.post(url, content=big, headers=bearer(stack.bob.access_token))
        streamed = await proxy.client.post(url, content=chunked(), headers=bearer(stack.bob.access_token))
        small = await proxy.client.post(url, json=GENERATE, headers=bearer(stack.bob.access_token))
    _assert_error(declared, 413, "cube_proxy.body_too_large")
    _assert_error(streamed, 413, "cube_proxy.body_too_large")
    assert small.status_code == 200
    assert scripted_backend.request_count == 1


async def test_rate_limit_is_429_with_retry_after_per_user(
    make_proxy: MakeProxy, stack: AuthStack, clock: ManualClock
) -> None:
    async with make_proxy(rate_limit_per_minute=60, rate_limit_burst=2) as proxy:
        for _ in range(2):
            assert (await _post(proxy, stack.domain, stack.bob.access_token)).status_code == 200
        limited = await _post(proxy, stack.domain, stack.bob.access_token)
        _assert_error(limited, 429, "cube_proxy.rate_limited")
        assert limited.headers["retry-after"] == "1"
        other = await _post(proxy, stack.domain, stack.alice.access_token)  # another user's bucket
        assert other.status_code == 200
        clock.advance(1.0)
        assert (await _post(proxy, stack.domain, stack.bob.access_token)).status_code == 200
