"""CubeClient.embed against the SCRIPTED BACKEND's embedding routes (/api/embed, /v1/embeddings)."""

from __future__ import annotations

import json

import pytest

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyProtocolError
from cube_wire.errors import CubeError
from tests.cube._helpers import settings_for
from tests.support.scripted_backend import EMBED_DIM, Reply, ScriptedBackend, scripted_embedding

ROUTES = [("ollama", "/test-domain/api/embed"), ("openai", "/test-domain/v1/embeddings")]


@pytest.mark.parametrize(("api", "path"), ROUTES)
async def test_embed_batch_in_order(scripted_backend: ScriptedBackend, api: str, path: str) -> None:
    texts = ["def refresh_token(): ...", "class Session: pass", "x = 1"]
    async with CubeClient(settings_for(scripted_backend, api=api)) as client:
        vectors = await client.embed(texts, model="minilm")
    assert [len(v) for v in vectors] == [EMBED_DIM] * 3
    assert vectors == [pytest.approx(scripted_embedding(t)) for t in texts]
    request = scripted_backend.requests[0]
    assert request.path == path
    assert request.json["input"] == texts and request.json["model"] == "minilm"


async def test_embed_nothing_sends_nothing(scripted_backend: ScriptedBackend) -> None:
    async with CubeClient(settings_for(scripted_backend)) as client:
        assert await client.embed([], model="m") == []
    assert scripted_backend.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"embeddings": [[0.1, 0.2]]},  # one vector for two inputs
        {"embeddings": [[0.1, 0.2], [0.3]]},  # unequal widths
        {"embeddings": [[0.1, "x"], [0.3, 0.4]]},  # not a number
        {"vectors": []},  # not the wire format
    ],
)
async def test_embed_rejects_a_malformed_answer(scripted_backend: ScriptedBackend, body: dict) -> None:
    reply = Reply.raw_lines(json.dumps(body))
    scripted_backend.rule = lambda request: reply if request.route == "embed" else None
    async with CubeClient(settings_for(scripted_backend)) as client:
        with pytest.raises(ProxyProtocolError):
            await client.embed(["a", "b"], model="m")


async def test_embed_error_does_not_echo_the_code(scripted_backend: ScriptedBackend) -> None:
    secret_code = "API_KEY = 'sk-do-not-echo-this-one'"
    message = f"cannot embed {secret_code}"
    scripted_backend.rule = lambda request: Reply.failure(500, message) if request.route == "embed" else None
    async with CubeClient(settings_for(scripted_backend)) as client:
        with pytest.raises(CubeError) as caught:
            await client.embed([secret_code], model="m")
    assert "sk-do-not-echo-this-one" not in caught.value.message
