"""The built-in runtime over real HTTP: real llama.cpp inference on the demo GGUF behind uvicorn.

Every test talks to 127.0.0.1 through httpx; the runtime's generation reports (token ids evaluated,
tokens generated, why it ended) come from the observer hook, never from timing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cube_runtime_testkit import NOFIM_MODEL_NAME, RunningRuntime

from cube_stack.runtime import DEMO_MODEL_NAME, create_runtime_app

pytestmark = pytest.mark.slow


def _lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines() if line]


async def _post(runtime: RunningRuntime, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=runtime.url, timeout=60, trust_env=False) as client:
        if isinstance(body, bytes):
            return await client.post(path, content=body, headers={"content-type": "application/json"})
        return await client.post(path, json=body)


async def test_fim_generate_streams_ndjson_from_the_fim_token_ids(llama_runtime: RunningRuntime) -> None:
    body = {
        "model": DEMO_MODEL_NAME,
        "prompt": "def add(a, b):\n    ",
        "suffix": "\n\nprint(add(1, 2))\n",
        "options": {"num_predict": 24, "temperature": 0.7, "seed": 42},
    }
    response = await _post(llama_runtime, "/api/generate", body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = _lines(response.text)
    assert all(line["model"] == DEMO_MODEL_NAME for line in lines)
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    final = lines[-1]
    assert final["done_reason"] == "length" and final["eval_count"] == 24
    assert final["prompt_eval_count"] > 8 and final["eval_duration"] > 0 and final["total_duration"] > 0

    report = llama_runtime.reports.next()
    vocab = llama_runtime.vocab
    assert report.prompt_tokens[0] == vocab.fim_prefix
    assert report.prompt_tokens[-1] == vocab.fim_middle
    assert vocab.fim_suffix in report.prompt_tokens
    assert len(report.prompt_tokens) == final["prompt_eval_count"]
    assert "".join(line["response"] for line in lines) == report.text and report.text


async def test_same_seed_same_completion(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "prompt": "x = ", "suffix": "\n", "stream": False}
    body["options"] = {"num_predict": 16, "seed": 5, "temperature": 0.9}
    first = await _post(llama_runtime, "/api/generate", body)
    second = await _post(llama_runtime, "/api/generate", body)
    assert first.status_code == 200 and first.json()["response"] == second.json()["response"]
    assert first.json()["done"] is True and first.json()["eval_count"] == 16


async def test_suffix_on_a_model_without_fim_tokens_is_400(llama_runtime: RunningRuntime) -> None:
    response = await _post(
        llama_runtime, "/api/generate", {"model": NOFIM_MODEL_NAME, "prompt": "a", "suffix": "b"}
    )
    assert response.status_code == 400 and response.json()["code"] == "runtime.capability_missing"
    assert "error" in response.json()


async def test_raw_mode_sends_the_prompt_as_is(llama_runtime: RunningRuntime) -> None:
    vocab = llama_runtime.vocab
    prompt = "<|fim_prefix|>a = 1<|fim_suffix|>\n<|fim_middle|>"
    body = {"model": DEMO_MODEL_NAME, "prompt": prompt, "raw": True, "stream": False}
    body["options"] = {"num_predict": 4, "seed": 1}
    response = await _post(llama_runtime, "/api/generate", body)
    assert response.status_code == 200 and response.json()["eval_count"] == 4
    tokens = llama_runtime.reports.next().prompt_tokens
    assert tokens[0] == vocab.fim_prefix and tokens[-1] == vocab.fim_middle
    assert vocab.tokens.index("<|im_start|>") not in tokens


async def test_generate_without_raw_applies_the_chat_template(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "prompt": "hi", "stream": False, "options": {"num_predict": 2}}
    assert (await _post(llama_runtime, "/api/generate", body)).status_code == 200
    tokens = llama_runtime.reports.next().prompt_tokens
    assert tokens[0] == llama_runtime.vocab.tokens.index("<|im_start|>")


async def test_chat_uses_the_template_and_answers_as_assistant(llama_runtime: RunningRuntime) -> None:
    vocab = llama_runtime.vocab
    body = {
        "model": "CUBE-DEMO:random",  # names are case-insensitive, as in Ollama
        "messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "hello"}],
        "stream": False,
        "options": {"num_predict": 8, "seed": 3},
    }
    response = await _post(llama_runtime, "/api/chat", body)
    assert response.status_code == 200
    document = response.json()
    assert document["message"]["role"] == "assistant" and document["done"] is True
    assert document["eval_count"] == 8
    tokens = llama_runtime.reports.next().prompt_tokens
    im_start, im_end = vocab.tokens.index("<|im_start|>"), vocab.tokens.index("<|im_end|>")
    assert tokens.count(im_start) == 3 and tokens.count(im_end) == 2
    model = llama_runtime.runtime.registry.text_model(DEMO_MODEL_NAME)
    assert (
        model.detokenize(list(tokens)) == "system\nterse\nuser\nhello\nassistant\n"
    )  # controls render empty


async def test_chat_streams_message_chunks(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "messages": [{"role": "user", "content": "hi"}]}
    body["options"] = {"num_predict": 6, "seed": 2}
    lines = _lines((await _post(llama_runtime, "/api/chat", body)).text)
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 6
    assert all(line["message"]["role"] == "assistant" for line in lines)


async def test_stop_sequence_cuts_the_text_and_ends_the_generation(llama_runtime: RunningRuntime) -> None:
    base = {"model": DEMO_MODEL_NAME, "prompt": "s = '", "raw": True, "stream": False}
    options = {"num_predict": 40, "temperature": 0, "seed": 0}
    full = (await _post(llama_runtime, "/api/generate", {**base, "options": options})).json()["response"]
    assert len(full) >= 12, full
    stop = full[8:10]
    cut = full[: full.find(stop)]
    response = await _post(llama_runtime, "/api/generate", {**base, "options": {**options, "stop": [stop]}})
    document = response.json()
    assert document["response"] == cut and document["done_reason"] == "stop"
    assert document["eval_count"] < 40


async def test_client_disconnect_stops_the_generation(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "prompt": "while True:\n", "raw": True}
    body["options"] = {"num_predict": 4000, "seed": 9}
    async with (
        httpx.AsyncClient(base_url=llama_runtime.url, timeout=60, trust_env=False) as client,
        client.stream("POST", "/api/generate", json=body) as response,
    ):
        assert response.status_code == 200
        received = 0
        async for line in response.aiter_lines():
            if line:
                assert json.loads(line)["done"] is False
                received += 1
            if received == 3:
                break  # leaving the block closes the connection
    report = await asyncio.to_thread(llama_runtime.reports.next)
    assert report.cancelled and report.done_reason == "cancelled"
    assert 3 <= report.eval_count < 4000


async def test_two_requests_on_one_model_both_complete(llama_runtime: RunningRuntime) -> None:
    body = {
        "model": DEMO_MODEL_NAME,
        "prompt": "a",
        "raw": True,
        "stream": False,
        "options": {"num_predict": 30},
    }
    first, second = await asyncio.gather(
        _post(llama_runtime, "/api/generate", body), _post(llama_runtime, "/api/generate", body)
    )
    assert first.json()["eval_count"] == second.json()["eval_count"] == 30


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", {"model": "nope:latest", "prompt": "x"}),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ("/api/show", {"model": "nope"}),
        ("/api/embed", {"model": "nope", "input": "x"}),
    ],
)
async def test_unknown_model_is_404(llama_runtime: RunningRuntime, path: str, body: Any) -> None:
    response = await _post(llama_runtime, path, body)
    assert response.status_code == 404 and response.json()["code"] == "runtime.model_not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", b"{not json"),
        ("/api/generate", b"[1, 2]"),
        ("/api/generate", {"prompt": "no model"}),
        ("/api/generate", {"model": DEMO_MODEL_NAME, "options": {"temperature": "hot"}}),
        ("/api/chat", {"model": DEMO_MODEL_NAME, "messages": "hello"}),
        ("/api/embed", {"model": DEMO_MODEL_NAME, "input": "x"}),  # not an embedding model
    ],
)
async def test_bad_bodies_are_400(llama_runtime: RunningRuntime, path: str, body: Any) -> None:
    response = await _post(llama_runtime, path, body)
    assert response.status_code == 400
    assert response.json()["code"] in {"runtime.bad_request", "runtime.capability_missing"}


async def test_prompt_longer_than_the_context_is_400(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "prompt": "x " * 5000, "raw": True, "stream": False}
    response = await _post(llama_runtime, "/api/generate", body)
    assert response.status_code == 400 and response.json()["code"] == "runtime.prompt_too_long"


async def test_tags_and_show_say_random_weights(llama_runtime: RunningRuntime) -> None:
    async with httpx.AsyncClient(base_url=llama_runtime.url, trust_env=False) as client:
        tags = (await client.get("/api/tags")).json()["models"]
        assert (await client.get("/")).text == "Ollama is running"
    assert {entry["name"] for entry in tags} == {DEMO_MODEL_NAME, NOFIM_MODEL_NAME}
    demo = next(entry for entry in tags if entry["name"] == DEMO_MODEL_NAME)
    assert demo["details"]["format"] == "gguf" and demo["details"]["family"] == "llama"
    assert len(demo["digest"]) == 64 and demo["size"] > 0
    show = (await _post(llama_runtime, "/api/show", {"name": DEMO_MODEL_NAME})).json()
    assert "RANDOM WEIGHTS" in show["modelfile"]
    assert show["model_info"]["general.description"].startswith("RANDOM WEIGHTS")
    assert show["capabilities"] == ["completion", "insert"] and "<|im_start|>" in show["template"]
    nofim = (await _post(llama_runtime, "/api/show", {"model": NOFIM_MODEL_NAME})).json()
    assert nofim["capabilities"] == ["completion"]


async def test_openai_completion_with_suffix(llama_runtime: RunningRuntime) -> None:
    body = {"model": DEMO_MODEL_NAME, "prompt": "a = ", "suffix": "\n", "max_tokens": 5, "seed": 1}
    document = (await _post(llama_runtime, "/v1/completions", body)).json()
    assert document["object"] == "text_completion" and document["choices"][0]["finish_reason"] == "length"
    assert document["usage"]["completion_tokens"] == 5
    assert llama_runtime.reports.next().prompt_tokens[0] == llama_runtime.vocab.fim_prefix


async def test_openai_chat_streams_server_sent_events(llama_runtime: RunningRuntime) -> None:
    body = {
        "model": DEMO_MODEL_NAME,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    response = await _post(llama_runtime, "/v1/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 4


async def test_openai_errors_use_the_openai_shape(llama_runtime: RunningRuntime) -> None:
    response = await _post(llama_runtime, "/v1/completions", {"model": "nope", "prompt": "x"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "runtime.model_not_found"
    async with httpx.AsyncClient(base_url=llama_runtime.url, trust_env=False) as client:
        models = (await client.get("/v1/models")).json()
    assert {m["id"] for m in models["data"]} == {DEMO_MODEL_NAME, NOFIM_MODEL_NAME}


async def test_probe_and_describe(llama_runtime: RunningRuntime) -> None:
    assert await llama_runtime.runtime.probe() is True
    info = llama_runtime.runtime.describe()
    assert info.kind == "builtin" and info.base_url.startswith("http://127.0.0.1:")


async def test_non_streaming_request_stops_when_the_client_leaves(llama_runtime: RunningRuntime) -> None:
    # Straight ASGI: the first receive() gives the body, every later one says the client has gone,
    # so the disconnect is seen exactly when the handler starts waiting for the generation.
    app = create_runtime_app(llama_runtime.runtime.registry)
    body = {"model": DEMO_MODEL_NAME, "prompt": "x", "raw": True, "stream": False}
    body["options"] = {"num_predict": 4000}
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/generate",
        "raw_path": b"/api/generate",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 11434),
    }
    await app(scope, receive, send)
    report = await asyncio.to_thread(llama_runtime.reports.next)
    assert report.cancelled and report.eval_count < 4000
    assert sent[0]["status"] == 499
