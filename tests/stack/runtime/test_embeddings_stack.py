"""The official ``openai`` client embedding through the proxy of a real `cube-stack up` (loopback, TLS).

Path: openai (base64, its default) -> proxy ``/{domainID}/v1/embeddings`` (bearer PAT, exact route table)
-> built-in runtime over its unix socket -> all-MiniLM-L6-v2. The proxy passes the body through, so the
``truncated_inputs`` note arrives too.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from cube_stack.runtime import MINILM_NAME
from cube_stack.stack import EmbeddedStack, StackOptions

pytestmark = pytest.mark.slow


async def test_openai_client_embeds_through_the_proxy(tmp_path: Path) -> None:
    openai = pytest.importorskip("openai")
    data = tmp_path / "stack"
    options = StackOptions(data_dir=data, port=0, auth_port=0, ollama_url=None, argon2_fast=True)
    async with EmbeddedStack(options) as running:
        assert running.embedding_model == MINILM_NAME
        trust = ssl.create_default_context(cafile=str(running.paths["certificate"]))
        http = httpx.AsyncClient(verify=trust, trust_env=False, timeout=120)
        async with openai.AsyncOpenAI(
            base_url=f"{running.endpoint}/{running.domain_id}/v1", api_key=running.token, http_client=http
        ) as client:
            answer = await client.embeddings.create(
                model=MINILM_NAME, input=["refresh the access token", "x = 1\n" * 400]
            )
            with pytest.raises(openai.BadRequestError):
                await client.embeddings.create(model=MINILM_NAME, input="x", encoding_format="int8")  # type: ignore[arg-type]
        assert [len(item.embedding) for item in answer.data] == [384, 384]
        assert answer.model_extra == {"truncated_inputs": [1], "max_input_tokens": 256}
