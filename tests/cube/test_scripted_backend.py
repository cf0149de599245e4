"""The SCRIPTED BACKEND itself: wire formats, recording, waiting, and per-test sessions."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.fixtures import SCRIPTED_TOKEN
from tests.support.scripted_backend import Reply, ScriptedBackend

AUTH = {"Authorization": f"Bearer {SCRIPTED_TOKEN}"}


def test_sync_api_records_and_streams(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream("a", "b"))
    second = scripted_backend.received.event(2)
    with httpx.Client(base_url=scripted_backend.url, trust_env=False, headers=AUTH) as http:
        response = http.post("/test-domain/api/generate", json={"model": "m", "prompt": "p"})
        recorded = scripted_backend.wait_for_request(1)
        assert not second.is_set()
        http.get("/test-domain/api/tags")
    assert second.is_set()
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["response"] for line in lines] == ["a", "b", ""]
    assert [line["done"] for line in lines] == [False, False, True]
    assert recorded.json == {"model": "m", "prompt": "p"}
    assert recorded.bearer == SCRIPTED_TOKEN
    assert recorded.route == "generate"
    assert scripted_backend.completed.value == 1


def test_openai_stream_format(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.stream("a"))
    with httpx.Client(base_url=scripted_backend.url, trust_env=False, headers=AUTH) as http:
        response = http.post(
            "/test-domain/v1/completions", json={"model": "m", "prompt": "p", "stream": True}
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    assert json.loads(events[0])["choices"][0]["text"] == "a"
    assert json.loads(events[1])["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [("/other-domain/api/generate", AUTH, 404), ("/test-domain/api/generate", {}, 401)],
)
def test_refusals_do_not_consume_the_script(
    scripted_backend: ScriptedBackend, path: str, headers: dict[str, str], status: int
) -> None:
    scripted_backend.script(Reply.stream("kept"))
    with httpx.Client(base_url=scripted_backend.url, trust_env=False) as http:
        assert http.post(path, json={}, headers=headers).status_code == status
        ok = http.post("/test-domain/api/generate", json={}, headers=AUTH)
    assert json.loads(ok.text.splitlines()[0])["response"] == "kept"


def test_rule_overrides_the_model_list(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.rule = lambda request: Reply.failure(503, "busy") if request.route == "models" else None
    with httpx.Client(base_url=scripted_backend.url, trust_env=False, headers=AUTH) as http:
        assert http.get("/test-domain/v1/models").status_code == 503
        assert http.get("/test-domain/api/tags").json()["models"][0]["name"] == "qwen2.5-coder:1.5b"


async def test_reset_ends_hanging_replies_without_counting_them(scripted_backend: ScriptedBackend) -> None:
    scripted_backend.script(Reply.hang_after("partial"))
    async with (
        httpx.AsyncClient(base_url=scripted_backend.url, trust_env=False, headers=AUTH) as http,
        http.stream("POST", "/test-domain/api/generate", json={}) as response,
    ):
        parts = response.aiter_lines()
        assert json.loads(await anext(parts))["response"] == "partial"
        old_completed = scripted_backend.completed
        scripted_backend.reset()
        assert [line async for line in parts] == []  # the reply ended instead of hanging
    await old_completed.wait_async(1)
    assert scripted_backend.request_count == 0
    assert scripted_backend.disconnect_count == 0
