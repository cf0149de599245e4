"""The auth API under real uvicorn against two findings of issue 8: trailing slashes and lone surrogates.

* A trailing slash on a real route with ``Host: evil.example`` used to answer 307 with
  ``Location: http://evil.example/...`` before any auth; it is the API's own JSON 404 now.
* Lone UTF-16 surrogates (the JSON escape ``"\\ud800"``) in a login or a new user: a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cube_auth_testkit import ADMIN, bearer, user_body

from cube_stack.auth import AuthSettings, create_auth_app
from cube_stack.net import bind_tcp

LONE = "\ud800"
JSON = {"content-type": "application/json"}


@pytest.fixture
async def auth_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = AuthSettings(
        data_dir=tmp_path,
        argon2_time_cost=1,
        argon2_memory_kib=8,
        admin_username=ADMIN["username"],
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
    )
    sock = bind_tcp("127.0.0.1", 0)
    config = uvicorn.Config(create_auth_app(settings), lifespan="on", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # uvicorn offers no start-up event; its flag is the API
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/users/tokens/issue/", {"username": ADMIN["username"], "password": ADMIN["password"]}),
        ("GET", "/health/", None),
        ("GET", "/keys/.well-known/jwks.json/", None),
    ],
)
async def test_a_trailing_slash_is_a_json_404_not_a_redirect_to_the_host_header(
    auth_url: str, method: str, path: str, body: Any
) -> None:
    async with httpx.AsyncClient(base_url=auth_url, trust_env=False) as client:
        response = await client.request(method, path, json=body, headers={"Host": "evil.example"})
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers
    assert response.json()["code"] == "auth.route_not_found"
    assert "access_token" not in response.text  # the login route never ran


def _encoded(document: Any) -> bytes:
    text = json.dumps(document)  # the surrogate travels as the JSON escape "\ud800"
    assert "\\ud800" in text
    return text.encode("ascii")


LOGINS = [
    {"username": ADMIN["username"] + LONE, "password": ADMIN["password"]},
    {"username": ADMIN["username"], "password": LONE},
    {"identity": LONE, "secret": LONE},
]


@pytest.mark.parametrize("document", LOGINS)
async def test_a_lone_surrogate_in_a_login_is_a_4xx(
    auth_url: str, caplog: pytest.LogCaptureFixture, document: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=auth_url, trust_env=False) as client:
        response = await client.post("/users/tokens/issue", content=_encoded(document), headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "auth.invalid_text"
    _assert_no_error_logged(caplog)


NEW_USERS = [
    user_body("eve", first_name=LONE),
    user_body("eve", last_name="x" + LONE),
    user_body("eve", email=LONE + "@example.com"),
    user_body("eve", credentials={"username": "eve" + LONE, "secret": "eve-password"}),
    user_body("eve", credentials={"username": "eve", "secret": "a-long-password-" + LONE}),
    user_body("eve", metadata={LONE: "x"}),
    user_body("eve", tags=[LONE]),
]


@pytest.mark.parametrize("document", NEW_USERS)
async def test_a_lone_surrogate_in_a_new_user_is_a_4xx(
    auth_url: str, caplog: pytest.LogCaptureFixture, document: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=auth_url, trust_env=False) as client:
        issued = await client.post(
            "/users/tokens/issue", json={"username": ADMIN["username"], "password": ADMIN["password"]}
        )
        assert issued.status_code == 201
        headers = {**JSON, **bearer(issued.json()["access_token"])}
        response = await client.post("/users", content=_encoded(document), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "auth.invalid_text"
    _assert_no_error_logged(caplog)


def _assert_no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy]
