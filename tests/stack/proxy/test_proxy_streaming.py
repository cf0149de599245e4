"""Streaming: chunks reach the client as the runtime produces them; no total limit; per-phase timeouts."""

from __future__ import annotations

import itertools
import json
import time

from cube_proxy_testkit import AuthStack, MakeProxy, bearer

from tests.support.fixtures import SCRIPTED_TOKEN
from tests.support.scripted_backend import Reply, ScriptedBackend

DELAY = 0.2  # seconds the scripted runtime waits before each chunk


async def _timed_lines(proxy, path: str, body: dict, token: str) -> tuple[int, list[tuple[float, str]]]:  # type: ignore[no-untyped-def]
    arrivals: list[tuple[float, str]] = []
    async with proxy.client.stream("POST", path, json=body, headers=bearer(token)) as response:
        async for line in response.aiter_lines():
            if line:
                arrivals.append((time.monotonic(), line))
    return response.status_code, arrivals


async def test_ndjson_chunks_arrive_as_the_runtime_sends_them(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    pieces = ("def ", "add", "(a, ", "b", "):")
    scripted_backend.script(Reply.stream(*pieces, delay=DELAY))
    async with make_proxy() as proxy:
        status, arrivals = await _timed_lines(
            proxy, f"/{stack.domain}/api/generate", {"model": "m", "prompt": "p"}, stack.bob.access_token
        )
    assert status == 200
    texts = [json.loads(line)["response"] for _, line in arrivals]
    assert texts == [*pieces, ""]  # the final done line carries no text
    times = [t for t, _ in arrivals]
    gaps = [b - a for a, b in itertools.pairwise(times[:-1])]  # the done line follows at once
    # Spread out like the runtime's delays, not one burst at the end.
    assert times[len(pieces) - 1] - times[0] >= (len(pieces) - 1) * DELAY * 0.6, gaps
    assert min(gaps) >= DELAY * 0.4, gaps


async def test_sse_chunks_arrive_as_the_runtime_sends_them(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    pieces = ("one", "two", "three", "four")
    scripted_backend.script(Reply.stream(*pieces, delay=DELAY))
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    async with make_proxy() as proxy:
        status, arrivals = await _timed_lines(
            proxy, f"/{stack.domain}/v1/chat/completions", body, stack.bob.access_token
        )
    assert status == 200
    events = [line for _, line in arrivals]
    assert events[-1] == "data: [DONE]"
    contents = [json.loads(e[6:])["choices"][0]["delta"].get("content") for e in events[: len(pieces)]]
    assert contents == list(pieces)
    times = [t for t, _ in arrivals[: len(pieces)]]
    assert times[-1] - times[0] >= (len(pieces) - 1) * DELAY * 0.6
    assert min(b - a for a, b in itertools.pairwise(times)) >= DELAY * 0.4


async def test_first_chunk_is_delivered_before_the_runtime_sends_the_second(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    # The second chunk is held until the test releases it, so receiving the first proves a flush per
    # chunk without any timing assumption.
    scripted_backend.script(Reply.stream("first", "second", hold_before=(1,)))
    async with make_proxy() as proxy:
        path = f"/{stack.domain}/api/chat"
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        async with proxy.client.stream("POST", path, json=body, headers=bearer(stack.bob.access_token)) as r:
            lines = r.aiter_lines()
            assert json.loads(await anext(lines))["message"]["content"] == "first"
            scripted_backend.release()
            rest = [json.loads(line) for line in [line async for line in lines] if line]
    assert [e["message"]["content"] for e in rest] == ["second", ""]
    assert rest[-1]["done"] is True


async def test_a_stream_outlives_every_timeout_while_chunks_keep_coming(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    pieces = tuple(f"t{i}" for i in range(10))
    scripted_backend.script(Reply.stream(*pieces, delay=0.12))  # 1.2 s in all, 4x every timeout
    timeouts = {"connect_timeout": 0.3, "first_byte_timeout": 0.3, "idle_timeout": 0.3}
    async with make_proxy(**timeouts) as proxy:
        started = time.monotonic()
        status, arrivals = await _timed_lines(
            proxy, f"/{stack.domain}/api/generate", {"model": "m", "prompt": "p"}, stack.bob.access_token
        )
    assert status == 200
    assert arrivals[-1][0] - started > 1.0
    events = [json.loads(line) for _, line in arrivals]
    assert [e["response"] for e in events[:-1]] == list(pieces) and events[-1]["done"] is True


async def test_idle_timeout_ends_the_stream_with_an_error_event(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    async with make_proxy(idle_timeout=0.3) as proxy:
        status, arrivals = await _timed_lines(
            proxy, f"/{stack.domain}/api/generate", {"model": "m", "prompt": "p"}, stack.bob.access_token
        )
        await scripted_backend.wait_for_disconnect_async(1)  # the upstream request was closed
    assert status == 200
    events = [json.loads(line) for _, line in arrivals]
    assert events[0]["response"] == "partial"
    assert events[-1]["code"] == "cube_proxy.runtime_idle_timeout" and "0.3 s" in events[-1]["error"]


async def test_idle_timeout_on_sse_uses_an_sse_error_event(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    async with make_proxy(idle_timeout=0.3) as proxy:
        status, arrivals = await _timed_lines(
            proxy, f"/{stack.domain}/v1/completions", {"model": "m", "prompt": "p"}, stack.bob.access_token
        )
    assert status == 200
    last = json.loads(arrivals[-1][1].removeprefix("data: "))
    assert last["error"]["code"] == "cube_proxy.runtime_idle_timeout"


async def test_first_byte_timeout_is_504(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.hang_before_headers())
    async with make_proxy(first_byte_timeout=0.3) as proxy:
        response = await proxy.client.post(
            f"/{stack.domain}/api/generate", json={"model": "m"}, headers=bearer(stack.bob.access_token)
        )
        await scripted_backend.wait_for_disconnect_async(1)
    assert response.status_code == 504
    assert response.json()["code"] == "cube_proxy.runtime_timeout"
    assert "did not answer within 0.3 s" in response.json()["message"]


async def test_forwarded_request_carries_no_client_credentials_or_hop_headers(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    async with make_proxy() as proxy:
        headers = {
            **bearer(stack.bob.access_token),
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Cookie": "session=abc",
            "Proxy-Authorization": "Basic eA==",
            "X-Request-Id": "r-1",
        }
        response = await proxy.client.post(
            f"/{stack.domain}/api/generate?debug=1", json={"model": "m"}, headers=headers
        )
    assert response.status_code == 200
    seen = scripted_backend.requests[0]
    assert seen.bearer == SCRIPTED_TOKEN  # the runtime's own key, never the user's token
    assert stack.bob.access_token not in repr(seen.headers)
    for name in ("x-hop", "keep-alive", "cookie", "proxy-authorization"):
        assert name not in seen.headers, name
    assert seen.headers["x-request-id"] == "r-1"
    assert seen.path == "/test-domain/api/generate"  # the route's path; the query string is dropped
    assert seen.json == {"model": "m"}
    assert "transfer-encoding" not in {
        k.lower() for k in response.headers if k.lower() != "transfer-encoding"
    }


async def test_model_lists_and_runtime_errors_pass_through(
    make_proxy: MakeProxy, stack: AuthStack, scripted_backend: ScriptedBackend
) -> None:
    scripted_backend.script(Reply.failure(500, "model crashed"))
    async with make_proxy() as proxy:
        token = bearer(stack.bob.access_token)
        tags = await proxy.client.get(f"/{stack.domain}/api/tags", headers=token)
        models = await proxy.client.get(f"/{stack.domain}/v1/models", headers=token)
        failed = await proxy.client.post(f"/{stack.domain}/api/generate", json={"model": "m"}, headers=token)
    assert tags.status_code == 200 and tags.json()["models"][0]["name"] == scripted_backend.models[0]
    assert models.status_code == 200 and models.json()["data"][0]["id"] == scripted_backend.models[0]
    assert failed.status_code == 500 and failed.json() == {"error": "model crashed"}
