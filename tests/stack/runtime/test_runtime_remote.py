"""OllamaRuntime and OpenAICompatibleRuntime: probing on loopback, model lists, URL handling."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cube_stack.runtime import (
    Api,
    OllamaRuntime,
    OpenAICompatibleRuntime,
    RuntimeSettingsError,
    RuntimeUnavailableError,
)


async def _tags(request: Request) -> JSONResponse:
    return JSONResponse({"models": [{"name": "qwen2.5-coder:1.5b", "model": "qwen2.5-coder:1.5b"}]})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@contextlib.asynccontextmanager
async def fake_ollama() -> AsyncIterator[str]:
    """A tiny Ollama stand-in (only /api/tags) on 127.0.0.1, port 0, under a real uvicorn."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    app = Starlette(routes=[Route("/api/tags", _tags)])
    server = _Server(uvicorn.Config(app, lifespan="off", access_log=False, log_config=None))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        sock.close()


def _closed_port() -> int:
    """A loopback port nothing listens on: bound (so the OS picked it), then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_ollama_probe_is_false_when_nothing_listens() -> None:
    runtime = OllamaRuntime(f"http://127.0.0.1:{_closed_port()}")
    assert await runtime.probe(seconds=0.5) is False


async def test_ollama_probe_is_true_against_a_fake_ollama() -> None:
    async with fake_ollama() as url:
        runtime = OllamaRuntime(url + "/")
        assert runtime.base_url == url
        assert await runtime.probe() is True
        assert await runtime.list_models() == ["qwen2.5-coder:1.5b"]
        info = runtime.describe()
        assert info.kind == "ollama" and info.apis == {Api.OLLAMA, Api.OPENAI}


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(200, content=b"not json"),
        httpx.Response(200, json={"data": []}),
    ],
)
async def test_ollama_probe_is_false_for_a_wrong_answer(response: httpx.Response) -> None:
    runtime = OllamaRuntime(transport=httpx.MockTransport(lambda request: response))
    assert await runtime.probe() is False
    with pytest.raises(RuntimeUnavailableError) as caught:
        await runtime.list_models()
    assert caught.value.code == "runtime.unavailable"


async def test_openai_runtime_strips_v1_and_sends_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"object": "list", "data": [{"id": "Qwen/Qwen2.5-Coder-1.5B"}]})

    runtime = OpenAICompatibleRuntime(
        "http://10.0.0.5:8000/v1/", api_key="k-123", transport=httpx.MockTransport(handler)
    )
    assert runtime.base_url == "http://10.0.0.5:8000"
    assert runtime.describe().apis == {Api.OPENAI}
    assert await runtime.probe() is True
    assert await runtime.list_models() == ["Qwen/Qwen2.5-Coder-1.5B"]
    assert seen[0].url.path == "/v1/models" and seen[0].headers["authorization"] == "Bearer k-123"


async def test_openai_probe_is_false_when_nothing_listens() -> None:
    assert await OpenAICompatibleRuntime(f"http://127.0.0.1:{_closed_port()}").probe(seconds=0.5) is False


@pytest.mark.parametrize("url", ["ftp://host", "127.0.0.1:11434", "http://", "http://h/?q=1"])
def test_bad_urls_are_settings_errors(url: str) -> None:
    with pytest.raises(RuntimeSettingsError) as caught:
        OllamaRuntime(url)
    assert caught.value.code == "runtime.settings_invalid"
