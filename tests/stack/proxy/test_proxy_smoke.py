"""First light: health, metrics and one streamed completion through the real servers."""

from __future__ import annotations

from conftest import MakeProxy
from cube_proxy_testkit import AuthStack, bearer

from tests.support.scripted_backend import Reply, ScriptedBackend


async def test_health_and_one_generation(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.stream("def ", "add"))
    async with make_proxy() as proxy:
        health = await proxy.client.get("/health")
        assert health.json()["status"] == "pass" and health.json()["service"] == "cube-proxy"
        response = await proxy.client.post(
            f"/{stack.domain}/api/generate",
            json={"model": "m", "prompt": "x"},
            headers=bearer(stack.bob.access_token),
        )
        assert response.status_code == 200, response.text
        assert "add" in response.text
