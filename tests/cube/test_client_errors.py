"""Every way a request to the proxy can fail surfaces as a ProxyError with a stable code."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyError, ProxyModelNotFound, ProxyTimeout
from cube_lsp.settings import AttestationSettings, Settings
from tests.support.fixtures import SCRIPTED_TOKEN
from tests.support.scripted_backend import Reply, ScriptedBackend

from ._helpers import FIM, collect, settings_for

APIS = ["ollama", "openai"]


async def stream_error(settings: Settings) -> ProxyError:
    async with CubeClient(settings) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    return caught.value


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "proxy.unauthorized"),
        (403, "proxy.forbidden"),
        (404, "proxy.model_not_found"),
        (500, "proxy.server_error"),
        (503, "proxy.server_error"),
        (429, "proxy.rate_limited"),
    ],
)
async def test_http_status_maps_to_code(
    scripted_backend: ScriptedBackend, api: str, status: int, code: str
) -> None:
    scripted_backend.script(Reply.failure(status, "scripted failure"))
    error = await stream_error(settings_for(scripted_backend, api=api))
    assert error.code == code


async def test_wrong_token_is_unauthorized(scripted_backend: ScriptedBackend) -> None:
    error = await stream_error(settings_for(scripted_backend, token="not-the-token"))
    assert error.code == "proxy.unauthorized"


async def test_model_not_found_names_the_model(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.failure(404, f"model {FIM.model!r} not found, try pulling it first"))
    error = await stream_error(settings_for(scripted_backend))
    assert isinstance(error, ProxyModelNotFound)
    assert error.model == FIM.model


async def test_unknown_domain_is_not_a_missing_model(scripted_backend: ScriptedBackend) -> None:
    async with CubeClient(settings_for(scripted_backend, domain="other-domain")) as client:
        with pytest.raises(ProxyError) as caught:
            await client.list_models()
    assert caught.value.code == "proxy.http_error"


@pytest.mark.parametrize("api", APIS)
async def test_server_message_is_shown_without_secrets(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(
        Reply.failure(500, f"CUDA out of memory; token={SCRIPTED_TOKEN} prompt={FIM.prompt}")
    )
    error = await stream_error(settings_for(scripted_backend, api=api))
    assert error.code == "proxy.server_error"
    assert "CUDA out of memory" in error.message
    assert SCRIPTED_TOKEN not in error.message
    assert FIM.prompt not in error.message


async def test_long_server_message_is_truncated(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.failure(502, "x" * 5000))
    error = await stream_error(settings_for(scripted_backend))
    assert error.code == "proxy.server_error"
    assert len(error.message) < 400


@pytest.mark.parametrize("api", APIS)
async def test_error_inside_a_stream_is_a_server_error(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(Reply.stream_error("runner crashed", "partial"))
    error = await stream_error(settings_for(scripted_backend, api=api))
    assert error.code == "proxy.server_error"


@pytest.fixture
def refusing_port() -> Iterator[int]:
    # Bound but not listening: the kernel answers every SYN with a reset, and the port cannot be reused.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def test_connection_refused_is_unreachable(refusing_port: int) -> None:
    settings = Settings(
        endpoint=f"http://127.0.0.1:{refusing_port}",
        domain="d",
        token="t",
        attestation=AttestationSettings(mode="off"),
    )
    error = await stream_error(settings)
    assert error.code == "proxy.unreachable"


@pytest.mark.parametrize("api", APIS)
async def test_first_byte_timeout(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(Reply.hang_before_headers())
    error = await stream_error(settings_for(scripted_backend, api=api, timeouts={"firstByteMs": 150}))
    assert isinstance(error, ProxyTimeout)
    assert error.phase == "first_byte"
    await scripted_backend.wait_for_disconnect_async(1)  # and the proxy learns we gave up


@pytest.mark.parametrize("api", APIS)
async def test_idle_timeout(scripted_backend: ScriptedBackend, api: str) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    settings = settings_for(scripted_backend, api=api, timeouts={"idleMs": 150})
    received: list[str] = []
    async with CubeClient(settings) as client:
        with pytest.raises(ProxyTimeout) as caught:
            async for chunk in client.stream_fim(FIM):
                received.append(chunk)
    assert caught.value.code == "proxy.timeout"
    assert caught.value.phase == "idle"
    assert received == ["partial"]
    await scripted_backend.wait_for_disconnect_async(1)


async def test_slow_headers_within_the_first_byte_budget_are_fine(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply(chunks=("ok",), headers_delay=0.1))
    settings = settings_for(scripted_backend, timeouts={"firstByteMs": 1000, "idleMs": 50})
    async with CubeClient(settings) as client:
        assert await collect(client) == ["ok"]


@pytest.mark.parametrize(
    ("api", "lines"),
    [
        ("ollama", ("not json",)),
        ("ollama", ("[1, 2]",)),
        ("ollama", ('{"response": 42, "done": false}',)),
        ("ollama", ('{"response": "no done line", "done": false}',)),
        ("ollama", (b'{"response": "\xff", "done": true}',)),
        ("openai", ("data: {not json", "")),
        ("openai", ('data: {"choices": "nope"}', "")),
        ("openai", ('data: {"choices": [{"text": 7}]}', "")),
        ("openai", ('data: {"choices": [{"text": "no done", "finish_reason": null}]}', "")),
    ],
    ids=[
        "ndjson-not-json",
        "ndjson-not-object",
        "ndjson-response-not-string",
        "ndjson-no-done",
        "ndjson-not-utf8",
        "sse-not-json",
        "sse-choices-not-list",
        "sse-text-not-string",
        "sse-no-done",
    ],
)
async def test_malformed_stream_is_a_protocol_error(
    scripted_backend: ScriptedBackend, api: str, lines: tuple[str | bytes, ...]
) -> None:
    scripted_backend.script(Reply.raw_lines(*lines))
    error = await stream_error(settings_for(scripted_backend, api=api))
    assert error.code == "proxy.protocol"


async def test_sse_without_done_but_finished_is_accepted(scripted_backend: ScriptedBackend) -> None:
    # Some OpenAI-compatible servers end the stream after a finish_reason without `data: [DONE]`.
    scripted_backend.script(
        Reply.raw_lines(
            ": keep-alive",
            'data: {"choices": [{"text": "a", "finish_reason": null}]}',
            "",
            'data: {"choices": [{"text": "b", "finish_reason": "length"}]}',
        )
    )
    async with CubeClient(settings_for(scripted_backend, api="openai")) as client:
        assert await collect(client) == ["a", "b"]


async def test_malformed_model_list_is_a_protocol_error(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.rule = lambda request: Reply.raw_lines('{"models": 3}')
    async with CubeClient(settings_for(scripted_backend)) as client:
        with pytest.raises(ProxyError) as caught:
            await client.list_models()
    assert caught.value.code == "proxy.protocol"


@pytest.mark.parametrize("missing", ["endpoint", "domain"])
async def test_missing_endpoint_or_domain_is_not_configured(missing: str) -> None:
    settings = Settings(**{"endpoint": "http://127.0.0.1:9", "domain": "d", missing: None})
    error = await stream_error(settings)
    assert error.code == "proxy.not_configured"
    assert missing in error.message


@pytest.mark.parametrize("api", APIS)
async def test_token_and_prompt_never_reach_the_logs(
    scripted_backend: ScriptedBackend, api: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scripted_backend.script(
        Reply.stream("completion-text-123"), Reply.failure(500, f"echo {SCRIPTED_TOKEN} {FIM.prompt}")
    )
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        await collect(client)
        with pytest.raises(ProxyError):
            await collect(client)
        await client.list_models()
    assert caplog.records  # the client does log, just not secrets
    logged = caplog.text
    for secret in (SCRIPTED_TOKEN, FIM.prompt, FIM.suffix.strip(), "completion-text-123"):
        assert secret not in logged


async def test_equal_failures_compare_equal(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.failure(503, "overloaded"), Reply.failure(503, "overloaded"))
    first = await stream_error(settings_for(scripted_backend))
    second = await stream_error(settings_for(scripted_backend))
    assert first is not second
    assert first == second
    assert len({first, second}) == 1
