"""``/v1/embeddings`` and ``/api/embed`` on the real all-MiniLM-L6-v2: base64, the OpenAI client, big batches.

The official ``openai`` package sends ``encoding_format: "base64"`` by default and decodes the answer as
little-endian float32; these tests run it against the built-in runtime served by uvicorn on loopback.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import httpx
import pytest

from cube_stack.runtime import MINILM_NAME, BuiltinRuntime

pytestmark = pytest.mark.slow

TEXTS = ["def add(a, b): return a + b", "function that sums two numbers", "HTTP proxy timeout"]


async def _post(runtime: BuiltinRuntime, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=runtime.base_url, timeout=300, trust_env=False) as client:
        return await client.post(path, json=body)


def _decode(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def _chunk(index: int, size: int = 1500) -> str:
    """A distinct, code-like text of ``size`` characters: far more than 256 word pieces."""
    lines, number = [], 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"    value_{index}_{number} = compute_{index}(items[{number}], limit={number * 7})")
        number += 1
    return f"def handler_{index}(items):\n" + "\n".join(lines)[:size]


async def test_base64_answer_is_the_float_answer_bit_for_bit(minilm_runtime: BuiltinRuntime) -> None:
    body = {"model": MINILM_NAME, "input": TEXTS}
    floats = (await _post(minilm_runtime, "/v1/embeddings", body)).json()
    encoded = (await _post(minilm_runtime, "/v1/embeddings", body | {"encoding_format": "base64"})).json()
    assert [item["index"] for item in encoded["data"]] == [0, 1, 2]
    for as_float, as_base64 in zip(floats["data"], encoded["data"], strict=True):
        assert isinstance(as_base64["embedding"], str)
        assert _decode(as_base64["embedding"]) == as_float["embedding"]  # exact: the same float32 values
    assert encoded["usage"] == floats["usage"]


async def test_unknown_encoding_is_an_openai_style_400(minilm_runtime: BuiltinRuntime) -> None:
    body = {"model": MINILM_NAME, "input": "x", "encoding_format": "int8"}
    response = await _post(minilm_runtime, "/v1/embeddings", body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "runtime.bad_request"


async def test_official_openai_client_embeds_with_its_default_base64(minilm_runtime: BuiltinRuntime) -> None:
    openai = pytest.importorskip("openai")
    seen: list[dict[str, Any]] = []

    async def record(request: httpx.Request) -> None:
        seen.append(json.loads(request.content))

    http = httpx.AsyncClient(trust_env=False, event_hooks={"request": [record]})
    async with openai.AsyncOpenAI(
        base_url=f"{minilm_runtime.base_url}/v1", api_key="unused", http_client=http
    ) as client:
        answer = await client.embeddings.create(model=MINILM_NAME, input=TEXTS)
    assert seen[0]["encoding_format"] == "base64"  # the client's default, which used to be a 400
    vectors = [item.embedding for item in answer.data]
    assert [len(vector) for vector in vectors] == [384, 384, 384]
    reference = (await _post(minilm_runtime, "/v1/embeddings", {"model": MINILM_NAME, "input": TEXTS})).json()
    for vector, expected in zip(vectors, reference["data"], strict=True):
        assert vector == pytest.approx(expected["embedding"], abs=1e-7)
    assert answer.usage.prompt_tokens > len(TEXTS)


async def test_64_long_chunks_embed_each_and_report_the_cut(minilm_runtime: BuiltinRuntime) -> None:
    chunks = [_chunk(i) for i in range(64)] + ["short text"]
    response = await _post(minilm_runtime, "/api/embed", {"model": MINILM_NAME, "input": chunks})
    assert response.status_code == 200
    document = response.json()
    vectors = document["embeddings"]
    assert len(vectors) == 65
    for vector in vectors:
        assert len(vector) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, abs_tol=1e-4)
    assert len({tuple(round(x, 5) for x in vector) for vector in vectors}) == 65  # no two inputs mixed up
    assert document["max_input_tokens"] == 256
    assert document["truncated_inputs"] == list(range(64))  # every long chunk, never the short one
    assert document["prompt_eval_count"] == 64 * 256 + 4  # counted as read: [CLS] short text [SEP]


async def test_a_long_input_embeds_only_its_first_256_tokens(minilm_runtime: BuiltinRuntime) -> None:
    head = _chunk(1, size=1500)
    tail_changed = head + "\n" + "\n".join(f"    other_{n} = unrelated_call({n})" for n in range(80))
    body = {"model": MINILM_NAME, "input": [head, tail_changed]}
    document = (await _post(minilm_runtime, "/v1/embeddings", body)).json()
    first, second = (item["embedding"] for item in document["data"])
    assert first == pytest.approx(second, abs=1e-6)  # what lies past the limit cannot change the vector
    assert document["truncated_inputs"] == [0, 1] and document["max_input_tokens"] == 256
    body = {"model": MINILM_NAME, "input": [head], "truncate": False}
    refused = await _post(minilm_runtime, "/api/embed", body)
    assert refused.status_code == 400 and refused.json()["code"] == "runtime.bad_request"
