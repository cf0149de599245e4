"""Smoke test: the app under a real uvicorn on 127.0.0.1, port 0, opening its own service at startup."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import uvicorn
from cube_auth_testkit import ADMIN, bearer

from cube_stack.auth import AuthSettings, create_auth_app
from cube_stack.net import bind_tcp


async def test_real_server_round_trip(tmp_path: Path) -> None:
    settings = AuthSettings(
        data_dir=tmp_path,  # default URL: SQLite in the data dir, as `cube-stack up` runs it
        argon2_time_cost=1,
        argon2_memory_kib=8,
        admin_username=ADMIN["username"],
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
    )
    sock = bind_tcp("127.0.0.1", 0)  # connections queue here until uvicorn accepts
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_auth_app(settings), lifespan="on", access_log=False, log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/health")).json()["status"] == "pass"
            issued = await client.post(
                "/users/tokens/issue", json={"username": ADMIN["username"], "password": ADMIN["password"]}
            )
            assert issued.status_code == 201
            profile = await client.get("/users/profile", headers=bearer(issued.json()["access_token"]))
            assert profile.status_code == 200 and profile.json()["role"] == "admin"
            assert len((await client.get("/keys/.well-known/jwks.json")).json()["keys"]) == 1
            refused = await client.get("/users/profile", headers=bearer(issued.json()["refresh_token"]))
            assert refused.status_code == 401 and refused.json()["code"] == "auth.wrong_token_type"
    finally:
        server.should_exit = True
        await serving
        sock.close()
    assert (tmp_path / "auth.db").exists()
