"""Hostile requests against the real runtime app (issue 8, findings 6 and 7), served by uvicorn.

* Lone UTF-16 surrogates (the JSON escape ``"\\ud800"``) anywhere in a body: a 400 with the stable code
  ``runtime.unpaired_surrogate`` on every route, never a 500 and never a traceback in the logs.
* A trailing slash on a real route, with a forged ``Host``: a 404, never a 307 whose ``Location`` points
  at the forged host.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from cube_runtime_testkit import RunningRuntime

from cube_stack.runtime import DEMO_MODEL_NAME, MINILM_NAME, BuiltinRuntime, UnpairedSurrogateError
from cube_stack.runtime.requests import reject_unpaired_surrogates

pytestmark = pytest.mark.slow

LONE = "\ud800"  # json.dumps writes it as the escape "\ud800", which json.loads turns back into it
CODE = "runtime.unpaired_surrogate"


def _encoded(document: Any) -> bytes:
    text = json.dumps(document)  # ensure_ascii: the surrogate goes as a JSON escape, as an attacker sends it
    assert "\\ud800" in text
    return text.encode("ascii")


async def _post_raw(base_url: str, path: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=60, trust_env=False) as client:
        return await client.post(path, content=body, headers={"content-type": "application/json"})


def _code(path: str, response: httpx.Response) -> str:
    body = response.json()
    return str(body["error"]["code"] if path.startswith("/v1/") else body["code"])


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [f"{r.name}: {r.getMessage()}" for r in noisy]


GENERATION_CASES = [
    ("/api/generate", {"model": DEMO_MODEL_NAME, "prompt": "x" + LONE, "stream": False}),
    ("/api/generate", {"model": DEMO_MODEL_NAME, "prompt": "def f(", "suffix": LONE, "stream": False}),
    ("/api/generate", {"model": DEMO_MODEL_NAME, "prompt": "x", "system": LONE, "stream": False}),
    ("/api/generate", {"model": DEMO_MODEL_NAME, "prompt": LONE}),  # streaming (Ollama's default)
    (
        "/api/chat",
        {
            "model": DEMO_MODEL_NAME,
            "messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "a" + LONE}],
            "stream": False,
        },
    ),
    ("/v1/completions", {"model": DEMO_MODEL_NAME, "prompt": LONE, "max_tokens": 4}),
    ("/v1/completions", {"model": DEMO_MODEL_NAME, "prompt": "x", "stop": ["\n", LONE], "max_tokens": 4}),
    (
        "/v1/chat/completions",
        {"model": DEMO_MODEL_NAME, "messages": [{"role": "user", "content": LONE}], "max_tokens": 4},
    ),
    (
        "/v1/chat/completions",
        {"model": DEMO_MODEL_NAME, "messages": [{"role": "user", "content": LONE}], "stream": True},
    ),
]


@pytest.mark.parametrize(("path", "document"), GENERATION_CASES)
async def test_a_lone_surrogate_in_a_generation_is_a_400_with_a_code(
    llama_runtime: RunningRuntime, caplog: pytest.LogCaptureFixture, path: str, document: dict[str, Any]
) -> None:
    response = await _post_raw(llama_runtime.url, path, _encoded(document))
    assert response.status_code == 400, response.text
    assert _code(path, response) == CODE
    _assert_no_traceback(caplog)


EMBEDDING_CASES = [
    ("/api/embed", {"model": MINILM_NAME, "input": LONE}),
    ("/api/embed", {"model": MINILM_NAME, "input": ["fine", "also" + LONE]}),
    ("/api/embeddings", {"model": MINILM_NAME, "prompt": LONE}),
    ("/v1/embeddings", {"model": MINILM_NAME, "input": [LONE]}),
]


@pytest.mark.parametrize(("path", "document"), EMBEDDING_CASES)
async def test_a_lone_surrogate_in_an_embedding_is_a_400_with_a_code(
    minilm_runtime: BuiltinRuntime, caplog: pytest.LogCaptureFixture, path: str, document: dict[str, Any]
) -> None:
    response = await _post_raw(minilm_runtime.base_url, path, _encoded(document))
    assert response.status_code == 400, response.text
    assert _code(path, response) == CODE
    _assert_no_traceback(caplog)


async def test_a_lone_surrogate_in_a_field_name_is_refused_too(
    llama_runtime: RunningRuntime, caplog: pytest.LogCaptureFixture
) -> None:
    document = {"model": DEMO_MODEL_NAME, "prompt": "x", "options": {LONE: 1}, "stream": False}
    response = await _post_raw(llama_runtime.url, "/api/generate", _encoded(document))
    assert response.status_code == 400 and _code("/api/generate", response) == CODE
    _assert_no_traceback(caplog)


async def test_a_surrogate_pair_is_a_character_and_still_generates(llama_runtime: RunningRuntime) -> None:
    document = {"model": DEMO_MODEL_NAME, "prompt": "x = '\U0001f600'", "stream": False}
    document["options"] = {"num_predict": 2, "seed": 1}
    body = json.dumps(document).encode("ascii")
    assert b"\\ud83d\\ude00" in body  # the escape pair json.loads joins into one character
    response = await _post_raw(llama_runtime.url, "/api/generate", body)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"prompt": LONE}, "prompt"),
        ({"messages": [{"content": "ok"}, {"content": "x" + LONE}]}, "messages[1].content"),
        ({"input": ["a", ["b", LONE]]}, "input[1][1]"),
        ({"options": {"stop": [LONE]}}, "options.stop[0]"),
        ({"options": {"a" + LONE: 1}}, "options.a\N{REPLACEMENT CHARACTER}"),
        (LONE, "(body)"),
        ({"a": "\udfff", "b": LONE}, "a"),  # the first one in document order
    ],
)
def test_the_check_names_the_field_holding_the_surrogate(document: Any, field: str) -> None:
    with pytest.raises(UnpairedSurrogateError) as raised:
        reject_unpaired_surrogates(document)
    assert raised.value.field == field and raised.value.code == CODE


def test_the_check_walks_deep_documents_without_recursion() -> None:
    document: Any = LONE
    for _ in range(100_000):
        document = [document]
    with pytest.raises(UnpairedSurrogateError):
        reject_unpaired_surrogates(document)
    reject_unpaired_surrogates({"ok": ["\U0001f600", {"k": 1.5, "n": None, "t": True}]})


async def test_deep_nesting_is_a_400_not_a_500(llama_runtime: RunningRuntime) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    response = await _post_raw(llama_runtime.url, "/api/generate", body)
    assert response.status_code == 400 and response.json()["code"] == "runtime.bad_request"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tags/"),
        ("POST", "/api/generate/"),
        ("POST", "/v1/chat/completions/"),
        ("GET", "/health/"),
    ],
)
async def test_a_trailing_slash_is_a_404_not_a_redirect_to_the_host_header(
    llama_runtime: RunningRuntime, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=llama_runtime.url, timeout=30, trust_env=False) as client:
        response = await client.request(method, path, headers={"Host": "evil.example"}, json={})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
