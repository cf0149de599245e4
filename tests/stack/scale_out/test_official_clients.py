"""Issue 12, acceptance: the official ``ollama`` and ``openai`` Python packages, through HAProxy.

The topology of :mod:`scale_out_kit` (auth on PostgreSQL, two TLS proxies with SIMULATED agents, Redis,
HAProxy made from the shipped haproxy.cfg, the built-in runtime with the RANDOM-WEIGHTS demo model and
MiniLM) serves each client with a PAT and with a JWT: list, show, generate and chat with and without
streaming, fill-in-the-middle with ``suffix`` (Ollama's generate and OpenAI's completions; the built-in
runtime supports both), and embeddings.

The clients trust the proxies' self-signed certificates the way cube-lsp does, not with ``verify=False``:
each gets an ``httpx.AsyncClient`` over cube-lsp's attested transport (``make_attested_transport``),
which sends nothing but a nonce to a key until its report, bound to that key, verified against the client
policy the proxies wrote; a connection that meets another key (the balancer's other proxy) attests it
first. The keys it pinned are checked against the ones the proxies logged at their start.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
import pytest_asyncio
from scale_out_kit import (
    DEMO_MODEL,
    EMBEDDER,
    RuntimeProcess,
    Topology,
    needs_balancer,
    running_topology,
)

from cube_lsp.cube.attested import AttestationStatus, AttestorOptions, make_attested_transport
from cube_lsp.settings import parse_settings

pytestmark = [
    pytest.mark.slow,
    needs_balancer,
]

PROXY_SETTINGS = {"RATE_LIMIT_BURST": "1000", "DECISION_TTL": "5"}  # limits are test_scale_out.py's topic
PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"
SHORT = 8  # tokens per generation: random weights, so the content is noise; the path is what counts
MINILM_DIMENSIONS = 384


@pytest.fixture(scope="module")
def topology(
    runtime: RuntimeProcess, agent_state: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    workdir = tmp_path_factory.mktemp("official")
    with running_topology(runtime.url, agent_state, workdir, PROXY_SETTINGS) as running:
        yield running


class Attested:
    """cube-lsp's attested transport for the clients to send through, and the keys it pinned."""

    def __init__(self, topology: Topology) -> None:
        settings, errors = parse_settings(topology.settings(token=""))
        assert not errors, errors
        self.pins: list[str] = []
        # No AMD key server: a SIMULATED report carries its whole chain.
        options = AttestorOptions(getter=None, cache_dir=None)
        self.transport = make_attested_transport(settings, options=options, on_status=self._status)

    def _status(self, status: AttestationStatus) -> None:
        assert status.state == "simulated", status.message
        if status.spki_sha256 is not None:
            self.pins.append(status.spki_sha256)


@pytest_asyncio.fixture(params=["pat", "jwt"])
async def token(request: pytest.FixtureRequest, topology: Topology) -> str:
    return topology.pat if request.param == "pat" else topology.admin_jwt


@pytest_asyncio.fixture
async def attested(topology: Topology) -> AsyncIterator[Attested]:
    client = Attested(topology)
    try:
        yield client
    finally:
        await client.transport.aclose()
        assert client.pins, "no key was attested"
        assert set(client.pins) <= {p.spki for p in topology.proxies}  # the keys the proxies logged


def _ollama(topology: Topology, attested: Attested, token: str) -> ollama.AsyncClient:
    return ollama.AsyncClient(
        host=f"{topology.endpoint}/{topology.domain}",
        headers={"Authorization": f"Bearer {token}"},
        transport=attested.transport,
        timeout=120,
    )


async def test_ollama_client(topology: Topology, attested: Attested, token: str) -> None:
    client = _ollama(topology, attested, token)
    listed = await client.list()
    assert {DEMO_MODEL, EMBEDDER} <= {m.model for m in listed.models}
    shown = await client.show(DEMO_MODEL)
    assert shown.details is not None and shown.details.family
    short: Any = {"num_predict": SHORT, "temperature": 0}

    generated = await client.generate(DEMO_MODEL, PREFIX, options=short)
    assert generated.done and generated.response
    parts = [part async for part in await client.generate(DEMO_MODEL, PREFIX, options=short, stream=True)]
    assert parts[-1].done and len(parts) > 1 and "".join(p.response for p in parts)

    filled = await client.generate(DEMO_MODEL, PREFIX, suffix=SUFFIX, options=short)
    assert filled.done and filled.response

    messages = [{"role": "user", "content": "Say hello."}]
    chat = await client.chat(DEMO_MODEL, messages=messages, options=short)
    assert chat.message.role == "assistant" and chat.message.content
    pieces = [
        part async for part in await client.chat(DEMO_MODEL, messages=messages, options=short, stream=True)
    ]
    assert pieces[-1].done and "".join(p.message.content for p in pieces)

    embedded = await client.embed(EMBEDDER, ["def add(a, b):", "print(add(1, 2))"])
    assert [len(v) for v in embedded.embeddings] == [MINILM_DIMENSIONS] * 2
    legacy = await client.embeddings(EMBEDDER, "def add(a, b):")
    assert len(legacy.embedding) == MINILM_DIMENSIONS


def _openai(topology: Topology, attested: Attested, token: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{topology.endpoint}/{topology.domain}/v1",
        api_key=token,
        http_client=httpx.AsyncClient(transport=attested.transport, timeout=120),
        max_retries=0,
    )


async def test_openai_client(topology: Topology, attested: Attested, token: str) -> None:
    client = _openai(topology, attested, token)
    models = [m.id async for m in client.models.list()]
    assert DEMO_MODEL in models and EMBEDDER in models

    completion = await client.completions.create(model=DEMO_MODEL, prompt=PREFIX, max_tokens=SHORT)
    assert completion.choices[0].text
    filled = await client.completions.create(model=DEMO_MODEL, prompt=PREFIX, suffix=SUFFIX, max_tokens=SHORT)
    assert filled.choices[0].text

    messages: Any = [{"role": "user", "content": "Say hello."}]
    chat = await client.chat.completions.create(model=DEMO_MODEL, messages=messages, max_tokens=SHORT)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content

    embedded = await client.embeddings.create(model=EMBEDDER, input=["def add(a, b):", "print(add(1, 2))"])
    assert [len(d.embedding) for d in embedded.data] == [MINILM_DIMENSIONS] * 2


async def test_openai_client_streams(topology: Topology, attested: Attested, token: str) -> None:
    client = _openai(topology, attested, token)
    stream = await client.completions.create(model=DEMO_MODEL, prompt=PREFIX, max_tokens=SHORT, stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices])

    messages: Any = [{"role": "user", "content": "Say hello."}]
    chat = await client.chat.completions.create(
        model=DEMO_MODEL, messages=messages, max_tokens=SHORT, stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in chat if c.choices])
