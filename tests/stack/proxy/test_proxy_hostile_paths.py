"""Hostile paths and bodies the proxy answers itself (issue 8, findings 6 and 7), on a real server.

* A trailing slash on a real route with ``Host: evil.example`` used to answer 307 with
  ``Location: http://evil.example/...`` before auth; it is the proxy's JSON 404 now, nothing forwarded.
* A lone UTF-16 surrogate as an attestation nonce (the one body the proxy parses): a 400.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cube_proxy_testkit import AuthStack, MakeProxy, bearer

from tests.support.scripted_backend import ScriptedBackend

LONE = "\ud800"


async def test_a_lone_surrogate_as_an_attestation_nonce_is_a_400(
    make_proxy: MakeProxy, stack: AuthStack
) -> None:
    class Agent:
        async def attest(self, nonce: bytes, spki_der: bytes) -> dict[str, Any]:
            raise AssertionError("a bad nonce must never reach the agent")

    raw = json.dumps({"nonce": LONE}).encode("ascii")
    async with make_proxy(agent=Agent()) as proxy:
        response = await proxy.client.post(
            f"/{stack.domain}/attestation", content=raw, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400 and response.json()["code"].startswith("cube_proxy.")


@pytest.mark.parametrize(
    ("method", "suffix", "authorised"),
    [
        ("POST", "/{domain}/api/generate/", True),
        ("GET", "/{domain}/api/tags/", True),
        ("POST", "/{domain}/v1/chat/completions/", True),
        ("POST", "/{domain}/api/generate/", False),
        ("POST", "/{domain}/attestation/", False),
        ("GET", "/health/", False),
        ("GET", "/metrics/", False),
    ],
)
async def test_a_trailing_slash_is_a_json_404_not_a_redirect_to_the_host_header(
    make_proxy: MakeProxy,
    stack: AuthStack,
    scripted_backend: ScriptedBackend,
    method: str,
    suffix: str,
    authorised: bool,
) -> None:
    headers = {"Host": "evil.example"}
    if authorised:
        headers |= bearer(stack.bob.access_token)
    body = {"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "x"}]}
    async with make_proxy() as proxy:
        response = await proxy.client.request(
            method, suffix.format(domain=stack.domain), json=body, headers=headers
        )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["code"] == "cube_proxy.route_not_found"
    assert scripted_backend.request_count == 0  # nothing was forwarded


async def test_the_real_route_without_the_slash_still_forwards(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    """The control for the test above: the same request without the slash does reach the backend."""
    headers = {"Host": "evil.example", **bearer(stack.bob.access_token)}
    async with make_proxy() as proxy:
        response = await proxy.client.get(f"/{stack.domain}/api/tags", headers=headers)
    assert response.status_code == 200
    assert scripted_backend.request_count == 1
