"""Streaming FIM completions from the scripted backend over both wire formats."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from cube_lsp.cube.client import CubeClient, StreamLimits
from cube_lsp.cube.errors import ProxyError
from tests.support.fixtures import SCRIPTED_TOKEN
from tests.support.scripted_backend import Reply, ScriptedBackend

from ._helpers import FIM, collect, settings_for


async def test_ollama_streams_chunks_in_order(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream(" a", " +", " b"))
    async with CubeClient(settings_for(scripted_backend, api="ollama")) as client:
        assert await collect(client) == [" a", " +", " b"]
    request = scripted_backend.requests[0]
    assert request.path == "/test-domain/api/generate"
    assert request.json == {
        "model": FIM.model,
        "prompt": FIM.prompt,
        "suffix": FIM.suffix,
        "raw": False,
        "stream": True,
        "options": {"num_predict": 64, "temperature": 0.1, "stop": ["\n\n"]},
        "keep_alive": "30m",
    }


async def test_openai_streams_chunks_in_order(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream(" a", " +", " b"))
    async with CubeClient(settings_for(scripted_backend, api="openai")) as client:
        assert await collect(client) == [" a", " +", " b"]
    request = scripted_backend.requests[0]
    assert request.path == "/test-domain/v1/completions"
    assert request.json == {
        "model": FIM.model,
        "prompt": FIM.prompt,
        "suffix": FIM.suffix,
        "max_tokens": 64,
        "temperature": 0.1,
        "stop": ["\n\n"],
        "stream": True,
    }


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_bearer_token_is_sent(scripted_backend: ScriptedBackend, api: str) -> None:
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        await collect(client)
    assert scripted_backend.requests[0].headers["authorization"] == f"Bearer {SCRIPTED_TOKEN}"


@pytest.mark.parametrize(
    ("api", "path"), [("ollama", "/test-domain/api/tags"), ("openai", "/test-domain/v1/models")]
)
async def test_list_models(scripted_backend: ScriptedBackend, api: str, path: str) -> None:
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        assert await client.list_models() == ["qwen2.5-coder:1.5b", "starcoder2:3b"]
    assert scripted_backend.requests[0].path == path


async def test_connection_is_reused_between_requests(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream("x"), Reply.stream("y"))
    async with CubeClient(settings_for(scripted_backend)) as client:
        assert await collect(client) == ["x"]
        assert await collect(client) == ["y"]
    assert scripted_backend.disconnect_count == 0
    assert scripted_backend.completed.value == 2


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_no_total_limit_on_a_live_stream(scripted_backend: ScriptedBackend, api: str) -> None:
    # connect + first byte + idle = 350 ms; the stream lasts about 600 ms but is never idle for 150 ms.
    scripted_backend.script(Reply.stream(*[f"t{i}" for i in range(12)], delay=0.05))
    settings = settings_for(
        scripted_backend, api=api, timeouts={"connectMs": 100, "firstByteMs": 100, "idleMs": 150}
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with CubeClient(settings) as client:
        assert await collect(client) == [f"t{i}" for i in range(12)]
    assert loop.time() - started > 0.35


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_chunks_arrive_before_the_stream_ends(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(Reply.stream("first", "second", hold_before=(1,)))
    async with (
        CubeClient(settings_for(scripted_backend, api=api)) as client,
        contextlib.aclosing(client.stream_fim(FIM)) as chunks,
    ):
        assert await anext(chunks) == "first"  # the server is holding "second" back
        scripted_backend.release()
        assert [chunk async for chunk in chunks] == ["second"]


async def test_cancelling_the_task_disconnects_the_backend(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    first = asyncio.Event()

    async def consume(client: CubeClient) -> None:
        async for _ in client.stream_fim(FIM):
            first.set()

    async with CubeClient(settings_for(scripted_backend)) as client:
        task = asyncio.create_task(consume(client))
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await scripted_backend.wait_for_disconnect_async(1)
    assert scripted_backend.completed.value == 0


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_closing_the_iterator_disconnects_the_backend(
    scripted_backend: ScriptedBackend, api: str
) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        async with contextlib.aclosing(client.stream_fim(FIM)) as chunks:
            async for chunk in chunks:
                assert chunk == "partial"
                break
        await scripted_backend.wait_for_disconnect_async(1)
        # The pool is still usable after the aborted stream.
        scripted_backend.script(Reply.stream("next"))
        assert await collect(client) == ["next"]


async def test_closing_the_client_disconnects_open_streams(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    client = CubeClient(settings_for(scripted_backend))
    chunks = client.stream_fim(FIM)
    assert await anext(chunks) == "partial"
    await client.aclose()
    await scripted_backend.wait_for_disconnect_async(1)
    with pytest.raises(ProxyError):
        await anext(chunks)
    await chunks.aclose()


async def test_total_text_is_capped(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream("abcd", "efgh"))
    limits = StreamLimits(max_text_chars=6)
    async with CubeClient(settings_for(scripted_backend), limits=limits) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.protocol"


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_a_line_is_capped(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(Reply.stream("x" * 200))
    limits = StreamLimits(max_line_bytes=128)
    async with CubeClient(settings_for(scripted_backend, api=api), limits=limits) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.protocol"
