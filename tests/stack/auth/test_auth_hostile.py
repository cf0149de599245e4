"""Hostile and careless input: every route answers 4xx with a JSON error, never 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cube_auth_testkit import assert_error, bearer, sqlite_only

from cube_stack.auth import AuthSettings, create_auth_app
from cube_stack.auth.routes import ROUTES

pytestmark = sqlite_only
JSON = "application/json"
JSON_HEADERS = {"Content-Type": JSON}

BODY_ROUTES = [
    (method, route.path)
    for route in ROUTES
    for method in sorted(route.methods or ())
    if method in {"POST", "PATCH", "DELETE", "PUT"}
]
GARBAGE: list[tuple[str, bytes, str]] = [
    ("not_json", b"{nope", "application/json"),
    ("invalid_utf8", b'{"a": "\xff\xfe"}', "application/json"),
    ("array", b"[1, 2, 3]", "application/json"),
    ("number", b"42", "application/json"),
    ("null", b"null", "application/json"),
    ("string", b'"hello"', "application/json"),
    ("deep", b"[" * 30_000 + b"]" * 30_000, "application/json"),
    (
        "wrong_types",
        json.dumps({k: [1, {}] for k in ("name", "route", "members", "scopes")}).encode(),
        "application/json",
    ),
    (
        "nested_objects",
        json.dumps({"credentials": {"username": {"x": 1}}, "scopes": [[]]}).encode(),
        "application/json",
    ),
    ("form", b"a=1&b=2", "application/x-www-form-urlencoded"),
    ("empty", b"", "application/json"),
]


def _fill(path: str) -> str:
    return (
        path.replace("{domainID}", str(uuid.uuid4()))
        .replace("{patID}", str(uuid.uuid4()))
        .replace("{roleID}", "domain_abc")
    )


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
async def test_garbage_bodies_never_5xx(
    client: httpx.AsyncClient, admin_token: str, method: str, path: str
) -> None:
    for name, content, content_type in GARBAGE:
        headers = bearer(admin_token) | {"Content-Type": content_type}
        response = await client.request(method, _fill(path), content=content, headers=headers)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        if response.content:
            assert set(response.json()) == {"message", "code"}, (name, response.text)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{nope", "application/json", 400, "auth.invalid_json"),
        (b"[" * 30_000, "application/json", 400, "auth.invalid_json"),
        (b"[]", "application/json", 400, "auth.invalid_field"),
        (b'{"name": "n"}', "text/plain", 415, "auth.unsupported_content_type"),
        (b'{"name": "n"}', "", 415, "auth.unsupported_content_type"),
    ],
)
async def test_body_errors_have_stable_codes(
    client: httpx.AsyncClient, admin_token: str, content: bytes, content_type: str, status: int, code: str
) -> None:
    headers = bearer(admin_token) | {"Content-Type": content_type}
    assert_error(await client.post("/domains", content=content, headers=headers), status, code)


async def test_huge_body_by_content_length(client: httpx.AsyncClient, settings: AuthSettings) -> None:
    body = b'{"username": "' + b"a" * settings.max_body_bytes + b'"}'
    response = await client.post(
        "/users/tokens/issue", content=body, headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "auth.body_too_large")


async def test_huge_streamed_body(client: httpx.AsyncClient, settings: AuthSettings) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"username": "'
        for _ in range(settings.max_body_bytes // 1024 + 2):
            yield b"a" * 1024
        yield b'"}'

    response = await client.post(
        "/users/tokens/issue", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "auth.body_too_large")


async def _raw(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/users/tokens/issue",
        "raw_path": b"/users/tokens/issue",
        "query_string": b"",
        "headers": [(b"host", b"auth.test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("auth.test", 80),
    }
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_invalid_content_length(settings: AuthSettings, service: Any) -> None:
    app = create_auth_app(settings, service=service)
    status, body = await _raw(app, [(b"content-length", b"abc")], b"{}")
    assert status == 400 and json.loads(body)["code"] == "auth.malformed"


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/nope"), 404, "auth.route_not_found")
    assert_error(await client.delete("/users/profile"), 405, "auth.method_not_allowed")


@pytest.mark.parametrize("path", ["/pats/not-a-uuid", "/domains/%00", "/domains/" + "9" * 500])
async def test_bad_path_ids(client: httpx.AsyncClient, admin_token: str, path: str) -> None:
    assert_error(await client.get(path, headers=bearer(admin_token)), 400, "auth.invalid_field")


@pytest.mark.parametrize("token", ["x" * 100_000, "pat_" + "z" * 5000, "\u00e9\u00e9", "a.b"])
async def test_hostile_bearer_tokens(client: httpx.AsyncClient, token: str) -> None:
    headers = {"Authorization": ("Bearer " + token).encode("utf-8")}
    response = await client.get("/users/profile", headers=headers)  # type: ignore[arg-type]
    assert_error(response, 401, "auth.invalid_token")


@pytest.mark.parametrize("query", ["limit=abc", "offset=-1", "limit=1000", "status=all&limit=0"])
async def test_bad_paging(client: httpx.AsyncClient, admin_token: str, query: str) -> None:
    assert_error(
        await client.get(f"/domains?{query}", headers=bearer(admin_token)), 400, "auth.invalid_field"
    )


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/health+json"
    assert response.json()["status"] == "pass"
