"""CubeClient.stream_chat against the SCRIPTED BACKEND's chat routes (Ollama /api/chat, OpenAI SSE)."""

from __future__ import annotations

import asyncio

import pytest

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyError
from tests.cube._helpers import settings_for
from tests.support.scripted_backend import Reply, ScriptedBackend

MESSAGES = [{"role": "system", "content": "You explain code."}, {"role": "user", "content": "Explain x = 1"}]
ROUTES = [("ollama", "/test-domain/api/chat"), ("openai", "/test-domain/v1/chat/completions")]


@pytest.mark.parametrize(("api", "path"), ROUTES)
async def test_stream_chat_yields_the_answer_in_pieces(
    scripted_backend: ScriptedBackend, api: str, path: str
):
    scripted_backend.script(Reply.stream("It ", "binds ", "x."))
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        pieces = [piece async for piece in client.stream_chat(MESSAGES, model="chat-model")]
    assert pieces == ["It ", "binds ", "x."]
    request = scripted_backend.requests[0]
    assert request.path == path
    assert request.json["messages"] == MESSAGES and request.json["stream"] is True
    assert request.json["model"] == "chat-model"


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_closing_the_stream_early_disconnects_the_backend(scripted_backend: ScriptedBackend, api: str):
    scripted_backend.script(Reply.hang_after("first "))
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        stream = client.stream_chat(MESSAGES, model="m")
        assert await anext(stream) == "first "
        await stream.aclose()  # a cancelled chat
        await asyncio.wait_for(scripted_backend.wait_for_disconnect_async(1), 10)


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_a_stream_that_fails_midway_is_an_error(scripted_backend: ScriptedBackend, api: str):
    scripted_backend.script(Reply.stream_error("out of memory", "partial "))
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        got = []
        with pytest.raises(ProxyError, match="out of memory"):
            async for piece in client.stream_chat(MESSAGES, model="m"):
                got.append(piece)
    assert got == ["partial "]
